"""The page as Markdown, computed in the page by fixed code (the browser tool evaluates nothing a
caller sends): headings, paragraphs, links with their absolute URLs, lists, tables, code and
form fields, leaving out what is hidden, scripts and styles. Rendered DOM rather than HTML
source, so what scripts built is there and what CSS hides is not.
"""

MARKDOWN_JS = r"""
() => {
  const SKIP = new Set(["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE", "SVG", "CANVAS", "IFRAME",
    "HEAD"]);
  const BLOCK = new Set(["P", "DIV", "SECTION", "ARTICLE", "MAIN", "HEADER", "FOOTER", "NAV",
    "ASIDE", "FORM", "FIELDSET", "FIGURE", "BLOCKQUOTE", "ADDRESS", "DL", "DT", "DD"]);
  const visible = (el) => {
    const style = getComputedStyle(el);
    return style.display !== "none" && style.visibility !== "hidden";
  };
  const inline = (node) => {
    let out = "";
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) {
        out += child.textContent.replace(/\s+/g, " ");
        continue;
      }
      if (child.nodeType !== Node.ELEMENT_NODE || SKIP.has(child.tagName)) continue;
      if (!visible(child)) continue;
      const tag = child.tagName;
      if (tag === "A" && child.href) {
        const text = inline(child).trim();
        out += text ? `[${text}](${child.href})` : "";
      } else if (tag === "BR") out += "\n";
      else if (tag === "IMG") out += child.alt ? `![${child.alt}]` : "";
      else if (tag === "STRONG" || tag === "B") out += `**${inline(child).trim()}**`;
      else if (tag === "EM" || tag === "I") out += `*${inline(child).trim()}*`;
      else if (tag === "CODE") out += "`" + child.textContent + "`";
      else if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") {
        const name = child.name || child.id || child.type;
        const shown = child.value ? ` = "${child.value}"` : "";
        if (child.type !== "hidden") out += ` [${tag.toLowerCase()} ${name}${shown}] `;
      } else if (tag === "BUTTON") out += ` [button: ${child.textContent.trim()}] `;
      else out += inline(child);
    }
    return out;
  };
  const blocks = [];
  const walk = (node, depth) => {
    for (const child of node.children) {
      if (SKIP.has(child.tagName) || !visible(child)) continue;
      const tag = child.tagName;
      const heading = /^H([1-6])$/.exec(tag);
      if (heading) blocks.push("#".repeat(+heading[1]) + " " + inline(child).trim());
      else if (tag === "UL" || tag === "OL") {
        const items = [...child.children].filter((i) => i.tagName === "LI" && visible(i));
        blocks.push(items.map((item, n) => "  ".repeat(depth)
          + `${tag === "OL" ? `${n + 1}.` : "-"} ${inline(item).trim()}`).join("\n"));
      } else if (tag === "PRE") blocks.push("```\n" + child.textContent.trimEnd() + "\n```");
      else if (tag === "TABLE") {
        const cells = (r) => [...r.cells].map((c) => inline(c).trim()).join(" | ");
        const rows = [...child.rows].map((r) => "| " + cells(r) + " |");
        if (rows.length) rows.splice(1, 0, "|" + " --- |".repeat(child.rows[0].cells.length));
        blocks.push(rows.join("\n"));
      } else if (BLOCK.has(tag) && [...child.children].some(
          (c) => BLOCK.has(c.tagName) || /^(H[1-6]|UL|OL|TABLE|PRE)$/.test(c.tagName))) {
        walk(child, depth);
      } else {
        const text = inline(child).trim();
        if (text) blocks.push(text);
      }
    }
  };
  const title = document.title ? `# ${document.title}\n\n` : "";
  if (document.body) walk(document.body, 0);
  if (!blocks.length && document.body) blocks.push(document.body.innerText);
  return title + blocks.filter((b) => b.trim()).join("\n\n").replace(/[ \t]+\n/g, "\n");
}
"""

TEXT_JS = "() => document.body ? document.body.innerText : ''"
