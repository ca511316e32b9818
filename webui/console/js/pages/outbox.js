// Outbox: what the gateway sends on push channels (replies sent later, context.send, POST
// /api/v1/send), newest first, with each one's state, attempts and last error; a failed one
// can be queued again. Refreshed every 5 s while the page is open.
// Route: #/outbox or #/outbox/<state>.
import {api} from "../api.js";
import {empty, fmtClock, fmtTime, h} from "../dom.js";
import {t} from "../i18n.js";

const STATES = ["waiting", "queued", "sending", "sent", "failed"];

function badge(row) {
  const kind = row.state === "sent" ? "ok" : row.state === "failed" ? "failed" : row.attempts ? "warning" : "";
  return h(`span.badge${kind ? "." + kind : ""}`, {}, t(`state.${row.state}`));
}

// One outbound message's facts, shared with the Sessions page's deliveries.
export function deliveryLine(row) {
  return h("div.who", {}, badge(row), h("span", {}, `${row.channel} · ${row.chat}`),
    h("span", {}, t(`origin.${row.origin}`)), h("span", {}, t("ob.attempts", row.attempts)), h("code", {}, row.id));
}

export function deliveries(rows) {
  return h("div.deliveries", {}, rows.map((row) => h("div.turn", {}, deliveryLine(row),
    row.history.map((step) => h("div.muted", {}, `${fmtClock(step.at, true)} · ${t(`step.${step.outcome}`)}`, step.detail ? ` · ${step.detail}` : "")))));
}

export function mount(main, args) {
  const state = h("select", {id: "ob-state", "aria-label": t("ob.state")},
    h("option", {value: ""}, t("ob.all")), STATES.map((s) => h("option", {value: s, selected: args[0] === s}, t(`state.${s}`))));
  const counts = h("span.pill", {id: "ob-counts", role: "status"});
  const note = h("div", {id: "ob-note", role: "status"});
  const list = h("div", {id: "ob-list"}, h("p.muted", {}, t("loading")));
  main.append(h("div.toolbar", {}, state, h("button", {type: "button", id: "ob-refresh", onclick: () => load()}, t("ob.refresh")), counts),
    note, h("section.card", {}, list));
  state.addEventListener("change", () => { location.hash = state.value ? `#/outbox/${state.value}` : "#/outbox"; });

  async function retry(row) {
    try {
      await api(`/api/v1/outbox/${encodeURIComponent(row.id)}/retry`, {json: {}});
      note.replaceChildren(h("div.banner.good", {}, t("ob.retried")));
    } catch (err) { note.replaceChildren(h("div.banner", {}, err.message)); }
    load();
  }

  function row(r) {
    return h("tr", {dataset: {id: r.id}},
      h("td.opt.day", {}, fmtTime(r.created_at)),
      h("td", {}, h("div", {}, `${r.channel} · ${r.chat}`), r.to ? h("div.muted", {}, `${t("ob.to")} ${r.to}`) : null),
      h("td", {}, badge(r), h("div.muted", {}, t("ob.attempts", r.attempts)),
        r.state === "queued" && r.attempts ? h("div.muted", {}, t("ob.next", fmtTime(r.next_try_at))) : null),
      h("td", {}, h("div.clip", {}, r.text), r.files.length ? h("div.muted", {}, t("ob.files", r.files.length)) : null,
        r.last_error ? h("div.error-text", {}, r.last_error) : null),
      h("td", {}, r.msg_id ? h("a.button.small", {href: `#/sessions/msg/${encodeURIComponent(r.msg_id)}`}, t("ob.trace")) : t(`origin.${r.origin}`),
        r.state === "failed" ? h("button.small", {type: "button", onclick: () => retry(r)}, t("ob.retry")) : null));
  }

  async function load() {
    const body = await api(`/api/v1/outbox?state=${encodeURIComponent(args[0] || "")}`);
    counts.textContent = STATES.filter((s) => body.counts[s]).map((s) => `${t(`state.${s}`)} ${body.counts[s]}`).join(" · ");
    list.replaceChildren(body.outbound.length ? h("div.table-wrap", {}, h("table", {},
      h("thead", {}, h("tr", {}, h("th.opt", {}, t("ob.time")), h("th", {}, t("ob.chat")), h("th", {}, t("ob.state")),
        h("th", {}, t("ob.text")), h("th", {}, ""))),
      h("tbody", {}, body.outbound.map(row)))) : empty(t("ob.empty")));
  }

  load().catch((err) => list.replaceChildren(h("p.error-text", {}, err.message)));
  const timer = setInterval(() => load().catch(() => {}), 5000);
  return () => clearInterval(timer);
}
