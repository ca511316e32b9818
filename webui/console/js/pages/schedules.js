// Schedules: reminders people set in chat (/remind, the model's set_reminder) and the
// schedules skills declare (@context.schedule), with each one's next run in the gateway's
// zone, where it goes and what became of its last run; a waiting one can be cancelled.
// Refreshed every 5 s while the page is open. Route: #/schedules (#/schedules/all: finished too).
import {api} from "../api.js";
import {empty, h} from "../dom.js";
import {t} from "../i18n.js";

function badge(row) {
  const kind = row.state === "active" ? "ok" : row.state === "cancelled" || row.state === "skipped" ? "warning" : "";
  return h(`span.badge${kind ? "." + kind : ""}`, {}, t(`scs.${row.state}`));
}

export function mount(main, args) {
  const everything = h("input", {type: "checkbox", id: "sc-all", checked: args[0] === "all"});
  const zone = h("span.pill", {id: "sc-zone", role: "status"});
  const note = h("div", {id: "sc-note", role: "status"});
  const list = h("div", {id: "sc-list"}, h("p.muted", {}, t("loading")));
  main.append(h("div.toolbar", {}, h("label", {}, everything, ` ${t("sc.all")}`),
    h("button", {type: "button", id: "sc-refresh", onclick: () => load()}, t("ob.refresh")), zone),
    note, h("section.card", {}, list));
  everything.addEventListener("change", () => { location.hash = everything.checked ? "#/schedules/all" : "#/schedules"; });

  async function cancel(row) {
    try {
      await api(`/api/v1/schedules/${encodeURIComponent(row.id)}/cancel`, {json: {}});
      note.replaceChildren(h("div.banner.good", {}, t("sc.cancelled", row.id)));
    } catch (err) { note.replaceChildren(h("div.banner", {}, err.message)); }
    load();
  }

  function row(r) {
    return h("tr", {dataset: {id: r.id}},
      h("td", {}, h("code", {}, r.id), h("div.muted", {}, r.kind === "skill" ? r.skill : r.owner)),
      h("td", {}, r.next_local || "-", r.cron ? h("div.muted", {}, `cron ${r.cron}`) : null),
      h("td", {}, `${r.channel} · ${r.chat}`),
      h("td", {}, h("div.clip", {}, r.text)),
      h("td", {}, badge(r), r.last_state ? h("div.muted.last", {}, t("sc.last", r.last_state)) : null),
      h("td", {}, r.state === "active" ? h("button.small", {type: "button", onclick: () => cancel(r)}, t("sc.cancel")) : null));
  }

  async function load() {
    const body = await api(`/api/v1/schedules${everything.checked ? "?all=1" : ""}`);
    zone.textContent = t("sc.zone", body.zone);
    list.replaceChildren(body.schedules.length ? h("div.table-wrap", {}, h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, t("sc.id")), h("th", {}, t("sc.next")), h("th", {}, t("ob.chat")),
        h("th", {}, t("ob.text")), h("th", {}, t("ob.state")), h("th", {}, ""))),
      h("tbody", {}, body.schedules.map(row)))) : empty(t("sc.empty")));
  }

  load().catch((err) => list.replaceChildren(h("p.error-text", {}, err.message)));
  const timer = setInterval(() => load().catch(() => {}), 5000);
  return () => clearInterval(timer);
}
