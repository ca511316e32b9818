// Moltbot chat page: sign in once (token or one-time code -> HttpOnly cookie), then talk over /ws.
import {connectChat} from "./wsclient.js";

const $ = (id) => document.getElementById(id);
let client = null;

function bubble(kind, text) {
  const el = document.createElement("div");
  el.className = `msg ${kind}`;
  el.textContent = text;
  $("log").appendChild(el);
  $("log").scrollTop = $("log").scrollHeight;
  return el;
}

// credential: {token} typed or from `dashboard --token-gen`, or {code} from the tray (one use)
async function login(credential) {
  const r = await fetch("/api/v1/login", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify(credential), credentials: "same-origin",
  });
  if (!r.ok) throw new Error((await r.json()).error.message);
}

async function signedIn() {
  const r = await fetch("/api/v1/whoami", {credentials: "same-origin"});
  return r.ok;
}

function connect() {
  client = connectChat({
    chat: "webchat", idPrefix: "web", log: $("log"),
    onStatus: (connected) => {
      $("status").textContent = connected ? "connected" : "disconnected, retrying…";
    },
    newReply: () => bubble("bot", ""),
    endReply: (el, answer) => {
      el.textContent = answer.text;
      if (answer.error) el.classList.add("error");
      const meta = document.createElement("small");
      meta.textContent = answer.msgId ? `msg_id ${answer.msgId}` : "";
      el.appendChild(meta);
    },
  });
}

function send(text) {
  if (!client || client.send(text) === null) return false;
  bubble("me", text);
  return true;
}

function showChat() {
  $("login").hidden = true;
  $("composer").hidden = false;
  connect();
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (text && send(text)) $("text").value = "";
});
$("text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
});
$("reset").addEventListener("click", () => send("/reset"));
$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try { await login({token: $("token").value.trim()}); showChat(); }
  catch (err) { $("login-error").textContent = err.message; }
});

(async () => {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const credential = fragment.has("code") ? {code: fragment.get("code")}
    : fragment.has("token") ? {token: fragment.get("token")} : null;
  if (credential) {
    history.replaceState(null, "", location.pathname); // the secret leaves the address bar
    try { await login(credential); } catch (err) { $("login-error").textContent = err.message; }
  }
  if (await signedIn()) showChat();
  else { $("login").hidden = false; $("status").textContent = "signed out"; }
})();
