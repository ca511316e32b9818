// Chat: talk to the assistant over /ws (the login cookie authenticates the same-origin
// socket); replies stream in as `reply.delta` frames, each final reply links to its trace.
// The conversation is the websocket channel's chat "console": on opening, the turns the model
// will continue are shown again from the store; "New conversation" sends /new, the same
// command any channel has, and the page starts empty.
import {connectChat} from "/static/wsclient.js";
import {api} from "../api.js";
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
  const reset = h("button", {type: "button", id: "chat-reset", disabled: true, onclick: () => startFresh()}, t("chat.reset"));
  main.append(h("div.toolbar", {}, status, h("span.spacer"), reset),
    h("section.card.chat", {}, log, h("p.muted.hint", {}, t("chat.hint")), form));

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

  const client = connectChat({
    chat: CHAT, idPrefix: "console", log,
    onStatus: (connected) => {
      reset.disabled = !connected;
      status.className = connected ? "pill live" : "pill";
      status.textContent = t(connected ? "chat.connected" : "chat.disconnected");
    },
    newReply: () => bubble("bot", ""),
    endReply: (el, answer) => {
      el.textContent = answer.text;
      if (answer.error) el.classList.add("error");
      if (answer.msgId) el.append(traceLink(answer.msgId));
    },
  });

  function send(message) {
    if (client.send(message) === null) return false;
    bubble("me", message);
    return true;
  }

  // "New conversation": its reply empties the page instead of showing as a bubble
  function startFresh() {
    client.send("/new", (answer) => {
      if (answer.error) bubble("bot.error", answer.text);
      else log.replaceChildren(empty(t("chat.empty")), h("p.chat-note", {id: "chat-fresh"}, t("chat.fresh")));
    });
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
  text.focus();
  return () => client.close();
}
