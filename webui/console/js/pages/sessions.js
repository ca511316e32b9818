// Sessions and traces: search sessions and messages, replay a session message by message,
// each with its trace as a waterfall and what the model was given.
// Routes: #/sessions, #/sessions/s/<session id>, #/sessions/msg/<msg_id>.
import {api} from "../api.js";
import {empty, fmtMs, fmtTime, h} from "../dom.js";
import {t} from "../i18n.js";
import {deliveries} from "./outbox.js";

function barKind(step, outcome) {
  if (outcome !== "ok") return "bad";
  if (step.startsWith("tool:")) return "tool";
  return ["model", "guard", "skill"].includes(step) ? step : "";
}

// The browser tool's screenshot, opened from its span (served by api/console_browser.py).
function shotLink(s) {
  if (s.step !== "browser:screenshot" || s.outcome !== "ok" || !/^[\w.-]+\.png$/.test(s.detail)) return null;
  return h("a.shot", {href: `/api/v1/browser/shots/${encodeURIComponent(s.detail)}`, target: "_blank",
    rel: "noopener"}, " ", t("ss.screenshot"));
}

export function waterfall(spans) {
  const total = Math.max(1, ...spans.map((s) => s.start_ms + s.duration_ms));
  return h("div.waterfall", {role: "list", "aria-label": t("ss.trace")},
    h("div.muted", {}, t("ss.total", total.toFixed(1))),
    spans.map((s) => {
      const bar = h(`div.wf-bar.${barKind(s.step, s.outcome) || "plain"}`);
      bar.style.left = `${(s.start_ms / total) * 100}%`;
      bar.style.width = `${(s.duration_ms / total) * 100}%`;
      return h("div.wf-row", {role: "listitem"},
        h("span.wf-name", {title: s.step}, s.step, s.outcome !== "ok" ? ` · ${s.outcome}` : ""),
        h("div.wf-track", {}, bar), h("span.wf-ms", {}, fmtMs(s.duration_ms)),
        s.detail ? h("div.wf-detail", {}, s.detail, shotLink(s)) : null);
    }));
}

function given(input) {
  if (!input) return h("p.muted", {}, t("ss.no_model"));
  return h("div.given", {},
    h("div.muted", {}, t("ss.tokens", input.prompt_tokens, input.completion_tokens, input.model)),
    input.given.map((g) => h(`div.g.${g.role}`, {}, h("div.role", {}, g.role, g.name ? ` · ${g.name}` : ""),
      g.content, g.tool_calls ? h("code", {}, g.tool_calls.map((c) => `${c.name}(${c.arguments})`).join("\n")) : null)));
}

async function messageCard(msg, open) {
  const body = h("div.detail");
  const card = h("article.turn", {dataset: {msgId: msg.id}},
    h("div.who", {}, h("strong", {}, msg.sender || "?"), h("span", {}, `${msg.channel} · ${fmtTime(msg.created_at)}`),
      h("span.badge." + (msg.status === "answered" ? "ok" : msg.status), {}, t(`status.${msg.status}`)),
      h("code", {}, msg.id), msg.route ? h("span", {}, `${t("ss.route")}: ${msg.route}`) : null),
    h("div.text", {}, msg.text),
    msg.reply !== null ? h("div.reply", {}, msg.reply) : null, body);
  const show = async (withInput = open) => {
    const full = await api(`/api/v1/messages/${encodeURIComponent(msg.id)}`);
    body.replaceChildren(
      h("details", {open: true}, h("summary", {}, t("ss.trace")), waterfall(full.spans)),
      full.deliveries && full.deliveries.length
        ? h("details", {open: true}, h("summary", {}, t("ss.deliveries")), deliveries(full.deliveries)) : "",
      h("details", {open: withInput}, h("summary", {}, t("ss.given")), given(full.model_input)),
      h("div.toolbar", {}, h("a.button", {href: `#/logs/msg/${encodeURIComponent(msg.id)}`}, "≡ ", t("ss.logs"))));
  };
  if (open) await show();
  else body.append(h("button.small", {type: "button", onclick: () => show()}, t("ss.trace")));
  card.showTrace = show;
  return card;
}

// Step through a session one message at a time: each step opens that message's trace.
function replayBar(cards) {
  let at = -1;
  const where = h("span.pill", {id: "ss-step", role: "status"}, `0 / ${cards.length}`);
  const prev = h("button", {type: "button", id: "ss-prev", disabled: true}, "◂ ", t("ss.prev"));
  const next = h("button.primary", {type: "button", id: "ss-next"}, t("ss.next"), " ▸");
  async function go(i) {
    at = Math.max(0, Math.min(cards.length - 1, i));
    cards.forEach((c, j) => c.classList.toggle("current", j === at));
    await cards[at].showTrace(true);
    cards[at].scrollIntoView({block: "nearest"});
    where.textContent = `${at + 1} / ${cards.length}`;
    prev.disabled = at === 0;
    next.disabled = at === cards.length - 1;
  }
  prev.addEventListener("click", () => go(at - 1));
  next.addEventListener("click", () => go(at + 1));
  return h("div.toolbar", {}, prev, next, where);
}

export function mount(main, args) {
  const q = h("input.grow", {id: "ss-q", type: "search", placeholder: t("ss.search"), "aria-label": t("ss.search")});
  const sender = h("input", {id: "ss-sender", placeholder: t("ss.sender"), "aria-label": t("ss.sender")});
  const msgId = h("input", {id: "ss-msgid", placeholder: t("ss.msg_id"), "aria-label": t("ss.msg_id")});
  const form = h("form.toolbar", {role: "search"}, q, sender, msgId, h("button.primary", {type: "submit"}, t("ss.find")));
  const list = h("div.list", {id: "ss-list"});
  const view = h("section.card", {id: "ss-view", "aria-live": "polite"}, empty(t("ss.pick")));
  main.append(form, h("div.split", {}, h("section.card", {}, h("h2", {}, t("ss.sessions")), list), view));

  async function loadSessions() {
    const body = await api(`/api/v1/sessions?q=${encodeURIComponent(q.value.trim())}`);
    list.replaceChildren(...(body.sessions.length ? body.sessions.map((s) => h("button", {type: "button",
      "aria-pressed": String(args[0] === "s" && args[1] === s.id), onclick: () => { location.hash = `#/sessions/s/${s.id}`; }},
    h("div.title", {}, `${s.channel} · ${s.chat}`), h("div.meta", {}, `${t(s.messages === 1 ? "ss.count_one" : "ss.count", s.messages)} · ${fmtTime(s.last_active)}`)))
      : [empty(q.value ? t("ss.no_match") : t("ss.empty"), h("a.button", {href: "#/chat"}, t("nav.chat")))]));
  }

  async function showMessages(params, title, openAll) {
    const body = await api(`/api/v1/messages?${params}`);
    const msgs = openAll ? body.messages.slice().reverse() : body.messages;
    const cards = await Promise.all(msgs.map((m) => messageCard(m, msgs.length === 1)));
    const bar = openAll && cards.length > 1 ? replayBar(cards) : null;
    view.replaceChildren(h("h2", {}, title), bar || "", ...(cards.length ? cards : [empty(t("ss.no_match"))]));
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    if (q.value.trim()) p.set("q", q.value.trim());
    if (sender.value.trim()) p.set("sender", sender.value.trim());
    if (msgId.value.trim()) p.set("msg_id", msgId.value.trim());
    loadSessions().catch(() => {});
    showMessages(p, t("ss.messages"), false).catch((err) => view.replaceChildren(h("p.error-text", {}, err.message)));
  });

  loadSessions().catch((err) => list.replaceChildren(h("p.error-text", {}, err.message)));
  if (args[0] === "s" && args[1]) {
    showMessages(new URLSearchParams({session: args[1], limit: "200"}), `${t("ss.replay")} · ${args[1]}`, true)
      .catch((err) => view.replaceChildren(h("p.error-text", {}, err.message)));
  } else if (args[0] === "msg" && args[1]) {
    msgId.value = args[1];
    showMessages(new URLSearchParams({msg_id: args[1]}), `${t("ss.trace")} · ${args[1]}`, false)
      .catch((err) => view.replaceChildren(h("p.error-text", {}, err.message)));
  }
  return null;
}
