// Memory: what the assistant keeps for each owner (memory/<owner>.md), with the owner's
// own changes: add a fact, edit or erase one, erase all (a second click confirms).
// Route: #/memory or #/memory/<owner>.
import {api} from "../api.js";
import {empty, h} from "../dom.js";
import {t} from "../i18n.js";

export function mount(main, args) {
  const note = h("div", {id: "mem-note", role: "status"});
  const owners = h("select", {id: "mem-owner", "aria-label": t("mem.owner")});
  const list = h("div", {id: "mem-list"}, h("p.muted", {}, t("loading")));
  const fact = h("input", {id: "mem-new", type: "text", placeholder: t("mem.new"), "aria-label": t("mem.new")});
  const add = h("button.primary", {type: "submit", id: "mem-add"}, t("mem.add"));
  const form = h("form.toolbar", {id: "mem-add-form"}, fact, add);
  main.append(h("div.toolbar", {}, owners, h("span.muted", {id: "mem-path"})), note,
    h("section.card", {}, list, form));
  owners.addEventListener("change", () => { location.hash = `#/memory/${encodeURIComponent(owners.value)}`; });
  let owner = args[0] || "";

  const say = (text, good = false) => note.replaceChildren(h(`div.banner${good ? ".good" : ""}`, {}, text));

  async function change(action, body, done) {
    try {
      await api(`/api/v1/memory/${encodeURIComponent(owner)}/${action}`, {json: body});
      say(done, true);
    } catch (err) { say(err.message); }
    await loadFacts();
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = fact.value.trim();
    if (!text || !owner) return;
    fact.value = "";
    change("add", {text}, t("mem.added"));
  });

  function row(f) {
    const text = h("span.mem-text", {}, f.text);
    const edit = h("button.small", {type: "button", dataset: {action: "edit"}}, t("mem.edit"));
    const erase = h("button.small", {type: "button", dataset: {action: "erase"}}, t("mem.erase"));
    const cell = h("td", {}, text);
    edit.addEventListener("click", () => {
      const input = h("input", {type: "text", value: f.text, "aria-label": t("mem.edit")});
      const save = h("button.small.primary", {type: "button", dataset: {action: "save"}}, t("mem.save"));
      save.addEventListener("click", () => change("edit", {position: f.position, was: f.text, text: input.value}, t("mem.edited")));
      cell.replaceChildren(input, save);
      input.focus();
    });
    erase.addEventListener("click", () => change("erase", {position: f.position, was: f.text}, t("mem.erased")));
    return h("tr", {dataset: {position: f.position}}, h("td.opt.day", {}, f.day || "–"), cell, h("td", {}, edit, erase));
  }

  async function loadFacts() {
    if (!owner) { list.replaceChildren(empty(t("mem.none"))); form.hidden = true; return; }
    const body = await api(`/api/v1/memory/${encodeURIComponent(owner)}`);
    document.getElementById("mem-path").textContent = body.path;
    form.hidden = false;
    let armed = false;
    const all = h("button.small", {type: "button", id: "mem-erase-all"}, t("mem.erase_all"));
    all.addEventListener("click", () => {
      if (!armed) { armed = true; all.textContent = t("mem.erase_all_confirm", body.facts.length); return; }
      change("erase-all", {}, t("mem.erased_all"));
    });
    list.replaceChildren(body.facts.length ? h("div.table-wrap", {}, h("table", {id: "mem-facts"},
      h("thead", {}, h("tr", {}, h("th.opt", {}, t("mem.day")), h("th", {}, t("mem.fact")), h("th", {}, ""))),
      h("tbody", {}, body.facts.map(row)))) : empty(t("mem.empty")), body.facts.length ? all : null);
  }

  async function load() {
    const body = await api("/api/v1/memory");
    if (!body.enabled) say(t("mem.off"));
    const names = body.owners.map((o) => o.owner);
    if (!owner || !names.includes(owner)) owner = names[0] || "";
    owners.replaceChildren(...body.owners.map((o) => h("option", {value: o.owner, selected: o.owner === owner},
      `${o.owner} (${t("mem.count", o.facts)})${o.identities.length ? " · " + o.identities.join(", ") : ""}`)));
    await loadFacts();
  }

  load().catch((err) => list.replaceChildren(h("p.error-text", {}, err.message)));
}
