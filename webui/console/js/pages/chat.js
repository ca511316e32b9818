// Chat: talk to the assistant over /ws (the login cookie authenticates the same-origin
// socket); replies stream in as `reply.delta` frames, each final reply links to its trace.
import {socketUrl} from "../api.js";
import {empty, h} from "../dom.js";
import {t} from "../i18n.js";

export function mount(main) {
  const log = h("div.chat-log", {id: "chat-log", role: "log", "aria-live": "polite"}, empty(t("chat.empty")));
  const text = h("textarea", {id: "chat-text", rows: 1, placeholder: t("chat.placeholder"), "aria-label": t("chat.placeholder")});
  const status = h("span.pill", {id: "chat-status", role: "status"}, "…");
  const form = h("form.composer", {id: "chat-form"}, text, h("button.primary", {type: "submit"}, t("chat.send")));
  main.append(h("div.toolbar", {}, status, h("span.spacer"), h("button", {type: "button", id: "chat-reset", onclick: () => send("/reset")}, t("chat.reset"))),
    h("section.card.chat", {}, log, form));
  const pending = new Map();
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

  function connect() {
    if (closed) return;
    socket = new WebSocket(socketUrl("/ws"));
    socket.onopen = () => { status.className = "pill live"; status.textContent = t("chat.connected"); };
    socket.onclose = () => {
      if (closed) return;
      status.className = "pill"; status.textContent = t("chat.disconnected");
      setTimeout(connect, 2000);
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      let el = pending.get(frame.id);
      if (frame.type === "reply.delta") {
        if (!el) { el = bubble("bot", ""); pending.set(frame.id, el); }
        el.append(frame.text);
      } else if (frame.type === "reply" || frame.type === "error") {
        if (!el) el = bubble("bot", "");
        el.textContent = frame.type === "reply" ? frame.text : frame.message;
        if (frame.type === "error") el.classList.add("error");
        if (frame.msg_id) el.append(h("small", {}, h("a", {href: `#/sessions/msg/${frame.msg_id}`}, `${t("chat.trace")} · ${frame.msg_id}`)));
        pending.delete(frame.id);
      }
      log.scrollTop = log.scrollHeight;
    };
  }

  function send(message) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    const id = `console-${Date.now()}-${counter++}`;
    bubble("me", message);
    socket.send(JSON.stringify({type: "message", id, text: message, chat: "console"}));
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
  connect();
  text.focus();
  return () => { closed = true; if (socket) socket.close(); };
}
