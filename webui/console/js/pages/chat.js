// Chat: talk to the assistant over /ws (the login cookie authenticates the same-origin
// socket); replies stream in as `reply.delta` frames, each final reply links to its trace.
// The conversation is the websocket channel's chat "console": on opening, the turns the model
// will continue are shown again from the store; "New conversation" sends /new, the same
// command any channel has, and the page starts empty.
import {api, socketUrl} from "../api.js";
import {empty, fmtTime, h} from "../dom.js";
import {t} from "../i18n.js";

const CHAT = "console";

function traceLink(msgId) {
  return h("small", {}, h("a", {href: `#/sessions/msg/${msgId}`}, `${t("chat.trace")} · ${msgId}`));
}

export function mount(main) {
  const log = h("div.chat-log", {id: "chat-log", role: "log", "aria-live": "polite"}, empty(t("chat.empty")));
  const text = h("textarea", {id: "chat-text", rows: 1, placeholder: t("chat.placeholder"), "aria-label": t("chat.placeholder")});
  const status = h("span.pill", {id: "chat-status", role: "status"}, "…");
  const form = h("form.composer", {id: "chat-form"}, text, h("button.primary", {type: "submit"}, t("chat.send")));
  const reset = h("button", {type: "button", id: "chat-reset", disabled: true, onclick: () => send("/new", true)}, t("chat.reset"));
  main.append(h("div.toolbar", {}, status, h("span.spacer"), reset),
    h("section.card.chat", {}, log, h("p.muted.hint", {}, t("chat.hint")), form));
  const pending = new Map();
  const resets = new Set(); // ids of the /new commands sent: their reply clears the page
  let socket = null;
  let closed = false;
  let counter = 0;

  function bubble(kind, content) {
    log.querySelector(".empty")?.remove();
    const el = h(`div.bubble.${kind}`, {}, content);
    log.append(el);
    log.scrollTop = log.scrollHeight;
    return el;
  }

  // the earlier turns go above anything typed while they loaded
  async function showEarlier() {
    const body = await api(`/api/v1/sessions/current?channel=websocket&chat=${CHAT}`);
    if (!body.messages.length) return;
    log.querySelector(".empty")?.remove();
    log.prepend(h("p.chat-note", {id: "chat-continued"}, t("chat.continued", fmtTime(body.messages[0].created_at))),
      ...body.messages.flatMap((m) => [h("div.bubble.me", {}, m.text), h("div.bubble.bot", {}, m.reply, traceLink(m.id))]));
    log.scrollTop = log.scrollHeight;
  }

  function connect() {
    if (closed) return;
    socket = new WebSocket(socketUrl("/ws"));
    socket.onopen = () => { status.className = "pill live"; status.textContent = t("chat.connected"); reset.disabled = false; };
    socket.onclose = () => {
      if (closed) return;
      reset.disabled = true;
      status.className = "pill"; status.textContent = t("chat.disconnected");
      setTimeout(connect, 2000);
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (resets.delete(frame.id)) {
        if (frame.type === "reply") log.replaceChildren(empty(t("chat.empty")), h("p.chat-note", {id: "chat-fresh"}, t("chat.fresh")));
        else bubble("bot.error", frame.message);
        return;
      }
      let el = pending.get(frame.id);
      if (frame.type === "reply.delta") {
        if (!el) { el = bubble("bot", ""); pending.set(frame.id, el); }
        el.append(frame.text);
      } else if (frame.type === "reply" || frame.type === "error") {
        if (!el) el = bubble("bot", "");
        el.textContent = frame.type === "reply" ? frame.text : frame.message;
        if (frame.type === "error") el.classList.add("error");
        if (frame.msg_id) el.append(traceLink(frame.msg_id));
        pending.delete(frame.id);
      }
      log.scrollTop = log.scrollHeight;
    };
  }

  function send(message, isReset = false) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    const id = `console-${Date.now()}-${counter++}`;
    if (isReset) resets.add(id);
    else bubble("me", message);
    socket.send(JSON.stringify({type: "message", id, text: message, chat: CHAT}));
    return true;
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const value = text.value.trim();
    if (value && send(value)) text.value = "";
  });
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  showEarlier().catch((err) => log.prepend(h("p.error-text", {}, err.message)));
  connect();
  text.focus();
  return () => { closed = true; if (socket) socket.close(); };
}
