// Skills and knowledge: what loaded (and every load error), the MCP tool servers (state, tools,
// restarts), the knowledge files, a search box to try a question, and an editor whose save
// shows the load result.
import {api} from "../api.js";
import {breakable, empty, h} from "../dom.js";
import {t} from "../i18n.js";

export function mount(main) {
  const skills = h("section.card", {id: "sk-skills"}, h("h2", {}, t("sk.skills")), h("p.muted", {}, t("loading")));
  const files = h("section.card", {id: "sk-files"}, h("h2", {}, t("sk.knowledge")));
  const question = h("input.grow", {id: "sk-q", type: "search", placeholder: t("sk.try"), "aria-label": t("sk.try")});
  const hits = h("div", {id: "sk-hits"});
  const search = h("section.card", {}, h("h2", {}, t("sk.try")),
    h("form.toolbar", {role: "search", onsubmit: (e) => { e.preventDefault(); ask(); }}, question, h("button.primary", {type: "submit"}, t("sk.ask"))), hits);
  const path = h("input.grow", {id: "sk-path", placeholder: t("sk.new"), "aria-label": t("sk.new")});
  const text = h("textarea", {id: "sk-text", spellcheck: false, "aria-label": t("sk.edit"), wrap: "off"});
  const saved = h("div", {id: "sk-result", role: "status"});
  const editor = h("section.card", {id: "sk-editor"}, h("h2", {}, t("sk.edit")),
    h("div.toolbar", {}, path, h("button", {type: "button", onclick: () => open(path.value)}, t("sk.open")),
      h("button.primary", {type: "button", id: "sk-save", onclick: () => save()}, t("sk.save"))),
    h("div.editor.single", {}, text), saved);
  const servers = h("section.card", {id: "sk-mcp"}, h("h2", {}, t("mcp.title")));
  main.append(h("div.grid", {}, skills, search), servers, h("div.grid", {}, files, editor));

  function split(p) {
    const [root, ...rest] = p.trim().split("/");
    return [root, rest.join("/")];
  }

  async function open(p) {
    const [root, rel] = split(p);
    path.value = p;
    try {
      const body = await api(`/api/v1/files/${root}/${rel.split("/").map(encodeURIComponent).join("/")}`);
      text.value = body.text;
      saved.replaceChildren(loadLine(body.load));
    } catch (err) {
      if (err.status !== 404) { saved.replaceChildren(h("p.error-text", {}, err.message)); return; }
      text.value = ""; saved.replaceChildren();
    }
    text.focus();
  }

  function loadLine(load) {
    if (!load) return "";
    if (load.ok) {
      const what = load.intents ? load.intents.join(", ") : t("sk.passages", load.passages);
      return h("div.banner.good", {}, `${t("sk.saved")} ${what}`);
    }
    return h("div.banner", {}, t("sk.load_error", load.error));
  }

  async function save() {
    const [root, rel] = split(path.value);
    try {
      const body = await api(`/api/v1/files/${root}/${rel.split("/").map(encodeURIComponent).join("/")}`,
        {method: "PUT", json: {text: text.value}});
      saved.replaceChildren(loadLine(body.load));
      refresh();
    } catch (err) { saved.replaceChildren(h("div.banner", {}, err.message)); }
  }

  async function ask() {
    if (!question.value.trim()) return;
    const body = await api(`/api/v1/knowledge/search?q=${encodeURIComponent(question.value.trim())}`);
    hits.replaceChildren(h("p.muted", {id: "sk-ranking"}, body.ranking), ...(body.hits.length ? body.hits.map((hit) => h("div.turn", {},
      h("div.who", {}, h("strong", {}, hit.title || hit.source), h("span", {}, hit.source), h("span.badge", {}, hit.origin || hit.score)),
      h("div.text", {}, hit.text))) : [empty(t("sk.no_hits"))]));
  }

  function sandboxLine(sandbox) {
    if (!sandbox) return "";
    return h("p.muted", {id: "sk-sandbox"}, `${t("sk.sandbox")}: `,
      h(sandbox.available ? "span.badge.ok" : "span.badge.error", {}, t(sandbox.available ? "sk.sandbox_on" : "sk.sandbox_off")),
      h("div", {}, sandbox.detail));
  }

  async function refresh() {
    const [loaded, knowledge] = await Promise.all([api("/api/v1/skills"), api("/api/v1/files/knowledge")]);
    const rows = loaded.skills;
    skills.replaceChildren(h("h2", {}, t("sk.skills")), rows.length ? h("div.table-wrap", {}, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, t("sk.intent")), h("th", {}, t("sk.command")), h("th", {}, t("sk.source")))),
      h("tbody", {}, rows.map((r) => h("tr", {},
        h("td", {}, r.intent || "–", " ", h(r.error ? "span.badge.error" : "span.badge.ok", {}, t(r.error ? "sk.error" : "sk.ok")),
          r.description ? h("div.muted", {}, r.description) : null, r.error ? h("div.error-text", {}, r.error) : null),
        h("td", {}, h("code", {}, r.command || "")),
        h("td", {}, h("button.small.path", {type: "button", onclick: () => open(r.source)}, breakable(r.source, "/")))))))) : empty(t("sk.no_skills")),
    sandboxLine(loaded.sandbox));
    const list = knowledge.files;
    files.replaceChildren(h("h2", {}, t("sk.knowledge")), list.length ? h("div.list", {}, list.map((f) => h("button", {type: "button",
      onclick: () => open(`knowledge/${f.path}`)}, h("div.title", {}, f.path),
    h("div.meta", {}, `${(f.bytes / 1024).toFixed(1)} KB`, knowledge.errors[f.path] ? ` · ${knowledge.errors[f.path]}` : "")))) : empty(t("sk.no_knowledge")));
  }

  async function refreshServers() {
    const rows = (await api("/api/v1/mcp")).servers;
    const badge = {running: "span.badge.ok", failed: "span.badge.error"};
    servers.replaceChildren(h("h2", {}, t("mcp.title")), rows.length ? h("div.table-wrap", {}, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, t("mcp.server")), h("th", {}, t("mcp.state")), h("th", {}, t("mcp.tools")),
        h("th", {}, t("mcp.offered")), h("th", {}, t("mcp.restarts")))),
      h("tbody", {}, rows.map((r) => h("tr", {"data-server": r.name},
        h("td", {}, h("strong", {}, r.name), h("div.muted", {}, `${r.transport}: `, breakable(r.target || "", "/"))),
        h("td", {}, h(badge[r.state] || "span.badge", {}, t(`mcp.${r.state}`)), r.reason ? h("div.error-text.reason", {}, r.reason) : null),
        h("td", {}, r.tools.join(", ") || "–"),
        h("td", {}, r.offered.join(", ") || "–", r.missing.length ? h("div.error-text", {}, t("mcp.missing", r.missing.join(", "))) : null),
        h("td", {}, String(r.restarts))))))) : empty(t("mcp.none")));
  }

  refresh().catch((err) => skills.append(h("p.error-text", {}, err.message)));
  refreshServers().catch((err) => servers.append(h("p.error-text", {}, err.message)));
  return null;
}
