// The layout test's check (tests/test_console_layout_browser.py), run in each console page:
// returns a list of sentences, one per problem a person would see.
(async () => {
  const i18n = await import("/console/js/i18n.js");
  const lang = document.documentElement.lang.startsWith("zh") ? "zh" : "en";
  const en = i18n.dictionary("en"), own = i18n.dictionary(lang);
  const problems = i18n.missingKeys().map((k) => `no translation for ${k}`);
  const SCROLLERS = "textarea, .loglist, .chat-log, pre.diff, .problems, .list, .u-over, .u-under";
  const sidebar = document.getElementById("sidebar");
  const menuOpen = sidebar.classList.contains("open");
  const sidebarAway = sidebar.getBoundingClientRect().right <= 0;
  const shown = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden"
    && !(sidebarAway && sidebar.contains(el));
  const where = (el) => {
    const parts = [];
    for (let e = el; e && e !== document.body && parts.length < 4; e = e.parentElement) {
      parts.unshift(e.tagName.toLowerCase() + (e.id ? `#${e.id}` : "") + [...e.classList].map((c) => `.${c}`).join(""));
    }
    return `${parts.join(" > ")} "${(el.textContent || el.value || "").trim().slice(0, 50)}"`;
  };
  const clipped = (el) => { // inside a box that scrolls or clips sideways (it is checked itself)
    for (let e = el.parentElement; e && e !== document.body; e = e.parentElement) {
      if (getComputedStyle(e).overflowX !== "visible") return true;
    }
    return false;
  };

  // text wider than its box
  for (const el of document.querySelectorAll("body *")) {
    if (!shown(el) || el.closest(SCROLLERS) || el.matches(".skip")) continue; // .skip: shown on focus
    if (getComputedStyle(el).textOverflow === "ellipsis" && el.title) continue; // whole in its tooltip
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`wider than its box by ${el.scrollWidth - el.clientWidth}px: ${where(el)}`);
    }
  }
  if (document.documentElement.scrollWidth > innerWidth + 1) {
    problems.push(`the page is ${document.documentElement.scrollWidth}px wide in a ${innerWidth}px window`);
  }

  // a placeholder longer than its field shows cut off (one line: what a phone shows)
  const ctx = document.createElement("canvas").getContext("2d");
  for (const el of document.querySelectorAll("input[placeholder], textarea[placeholder]")) {
    if (!shown(el) || el.value) continue;
    const st = getComputedStyle(el);
    ctx.font = `${st.fontSize} ${st.fontFamily}`;
    const room = el.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight);
    if (ctx.measureText(el.placeholder).width > room + 1) problems.push(`placeholder cut off: ${where(el)} "${el.placeholder}"`);
  }

  // each piece of text: outside the window, or on top of another
  const pieces = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walk.nextNode(); node; node = walk.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !shown(el) || el.closest("script, style, option, .skip")) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    for (const r of range.getClientRects()) if (r.width > 1 && r.height > 1) pieces.push({el, r});
  }
  for (const {el, r} of pieces) {
    if (!clipped(el) && (r.right > innerWidth + 1 || r.left < -1)) problems.push(`outside the window: ${where(el)}`);
  }
  if (!menuOpen) {
    for (let i = 0; i < pieces.length; i++) {
      for (let j = i + 1; j < pieces.length; j++) {
        const a = pieces[i], b = pieces[j];
        if (a.el === b.el) continue;
        const w = Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left);
        const h = Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top);
        if (w > 2 && h > 2) problems.push(`text on text: ${where(a.el)} and ${where(b.el)}`);
      }
    }
  }

  // untranslated: a raw key, or (in Chinese) an English string of the dictionary
  const keys = new Set(Object.keys(en));
  const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/\\\{\d\\\}/g, ".*");
  const english = lang === "en" ? [] : Object.keys(en).filter((k) => own[k] !== en[k])
    .map((k) => [k, new RegExp(`^${escape(en[k])}$`)]);
  const texts = pieces.map(({el}) => [el, [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join("").trim()]);
  for (const el of document.querySelectorAll("[placeholder], [title], [aria-label]")) {
    if (!shown(el)) continue;
    for (const name of ["placeholder", "title", "aria-label"]) if (el.getAttribute(name)) texts.push([el, el.getAttribute(name).trim()]);
  }
  for (const [el, text] of texts) {
    if (keys.has(text)) problems.push(`a raw i18n key: ${where(el)}`);
    const left = english.find(([, re]) => re.test(text));
    if (left) problems.push(`English in ${lang} (${left[0]}): ${where(el)}`);
  }
  return [...new Set(problems)];
})
