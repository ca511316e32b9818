// Config: edit config.yaml with each problem shown at its line, apply (the gateway takes it
// within a second), every applied version with its diff, and one-click rollback.
import {api} from "../api.js";
import {empty, fmtTime, h} from "../dom.js";
import {t} from "../i18n.js";

function diffView(text) {
  return h("pre.diff", {}, text.split("\n").map((line) => h(line.startsWith("+") && !line.startsWith("+++") ? "span.add"
    : line.startsWith("-") && !line.startsWith("---") ? "span.del" : "span", {}, `${line}\n`)));
}

export function mount(main) {
  const area = h("textarea", {id: "cfg-text", spellcheck: false, "aria-label": t("cfg.title"), wrap: "off"});
  const gutter = h("div.gutter", {"aria-hidden": "true"});
  const marks = h("div.marks", {"aria-hidden": "true"}); // a red band behind each line with a problem
  // the outcome of Check and Apply sits right under the buttons, above the editor: in view
  const result = h("div", {id: "cfg-result", role: "status"});
  const running = h("div", {id: "cfg-running"});
  const check = h("button", {type: "button", id: "cfg-check"}, t("cfg.check"));
  const apply = h("button.primary", {type: "button", id: "cfg-apply"}, t("cfg.apply"));
  const versions = h("div", {id: "cfg-versions"});
  main.append(running, h("div.grid.wide-left", {},
    h("section.card", {}, h("h2", {}, t("cfg.title"), h("span.spacer"), check, apply), result,
      h("div.editor", {}, gutter, h("div.code", {}, marks, area))),
    h("section.card", {}, h("h2", {}, t("cfg.versions")), versions)));
  let bad = new Set();

  function drawGutter() {
    const n = area.value.split("\n").length;
    gutter.replaceChildren(...Array.from({length: n}, (_, i) => h(bad.has(i + 1) ? "div.bad" : "div", {}, i + 1)));
    marks.replaceChildren(...[...bad].filter((line) => line <= n).map((line) => h("div.mark", {dataset: {line}})));
    follow();
  }

  // the gutter and the bands scroll with the text (20 px a line, 8 px padding, as in the CSS)
  function follow() {
    gutter.scrollTop = area.scrollTop;
    for (const mark of marks.children) mark.style.top = `${8 + (Number(mark.dataset.line) - 1) * 20 - area.scrollTop}px`;
  }

  function goToLine(line) {
    const lines = area.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((a, l) => a + l.length + 1, 0);
    area.focus();
    area.setSelectionRange(start, start + (lines[line - 1] || "").length);
    area.scrollTop = Math.max(0, (line - 5) * 20);
  }

  function showProblems(problems) {
    bad = new Set(problems.map((p) => p.line).filter(Boolean));
    drawGutter();
    if (!problems.length) { result.replaceChildren(h("div.banner.good", {}, t("cfg.ok"))); return; }
    result.replaceChildren(h("p.error-text", {}, t("cfg.problems", problems.length)),
      h("ul.problems", {}, problems.map((p) => h("li", {}, h("button", {type: "button", onclick: () => p.line && goToLine(p.line)},
        p.line ? `${t("cfg.line", p.line)}: ` : "", p.message)))));
  }

  async function runCheck(jump = false) {
    const body = await api("/api/v1/config/check", {json: {text: area.value}});
    showProblems(body.problems);
    if (jump) toFirst(body.problems);
    return body.problems;
  }

  // after a click on Check or Apply, the editor scrolls to the first problem's line
  function toFirst(problems) {
    const first = problems.find((p) => p.line);
    if (first) goToLine(first.line);
  }

  function showApplied(body) {
    if (body.problems) { showProblems(body.problems); toFirst(body.problems); return; }
    bad = new Set(); drawGutter();
    if (!body.diff) result.replaceChildren(h("p.muted", {}, t("cfg.unchanged")));
    else if (body.applied) result.replaceChildren(h("div.banner.good", {id: "cfg-applied"}, t("cfg.applied", body.version)),
      h("details", {}, h("summary", {}, t("cfg.view")), diffView(body.diff)));
    else result.replaceChildren(h("div.banner", {}, t("cfg.refused", body.error)));
    load();
  }

  async function load(fillEditor = false) {
    const body = await api("/api/v1/config");
    if (fillEditor) { area.value = body.text; drawGutter(); }
    running.replaceChildren(body.config_error ? h("div.banner", {}, t("cfg.running_error", body.config_error)) : "");
    versions.replaceChildren(...(body.versions.length ? body.versions.map((v) => h("div.turn", {dataset: {version: v.version}},
      h("div.who", {}, h("strong", {}, `v${v.version}`), h("span", {}, v.who), h("span", {}, v.source), h("span", {}, fmtTime(v.created_at))),
      v.diff ? h("details", {}, h("summary", {}, t("cfg.view")), diffView(v.diff)) : null,
      h("div.toolbar", {}, h("button.small", {type: "button", onclick: async () => {
        if (!confirm(t("cfg.confirm", v.version))) return;
        const r = await api("/api/v1/config/rollback", {json: {version: v.version}});
        area.value = (await api(`/api/v1/config/versions/${v.version}`)).text;
        showApplied(r);
      }}, "↺ ", t("cfg.rollback")))))
      : [empty(t("cfg.no_versions"))]));
  }

  let timer = null;
  area.addEventListener("input", () => { drawGutter(); clearTimeout(timer); timer = setTimeout(() => runCheck().catch(() => {}), 600); });
  area.addEventListener("scroll", follow);
  area.addEventListener("keydown", (e) => {
    if (e.key === "Tab" && !e.shiftKey) { // two spaces, as YAML wants; Esc then Tab leaves the editor
      if (area.dataset.escaped) { delete area.dataset.escaped; return; }
      e.preventDefault(); area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end"); drawGutter();
    } else if (e.key === "Escape") area.dataset.escaped = "1";
    else if ((e.ctrlKey || e.metaKey) && e.key === "s") { e.preventDefault(); apply.click(); }
  });
  check.addEventListener("click", () => runCheck(true).catch((err) => result.replaceChildren(h("p.error-text", {}, err.message))));
  apply.addEventListener("click", async () => {
    clearTimeout(timer); // the apply's own answer says whether it was valid
    apply.disabled = true;
    try { showApplied(await api("/api/v1/config", {json: {text: area.value}})); }
    catch (err) { result.replaceChildren(h("p.error-text", {}, err.message)); }
    finally { apply.disabled = false; }
  });
  load(true).catch((err) => result.replaceChildren(h("p.error-text", {}, err.message)));
  return () => clearTimeout(timer);
}
