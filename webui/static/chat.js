// Moltbot chat page: sign in once (token or one-time code -> HttpOnly cookie), then talk over /ws.
"use strict";
const $ = (id) => document.getElementById(id);
let socket = null;
let counter = 0;
const pending = new Map(); // client id -> bubble element

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
  const proto = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${proto}://${location.host}/ws`);
  socket.onopen = () => { $("status").textContent = "connected"; };
  socket.onclose = () => {
    $("status").textContent = "disconnected, retrying…";
    setTimeout(connect, 2000);
  };
  socket.onmessage = (event) => {
    const frame = JSON.parse(event.data);
    let el = pending.get(frame.id);
    if (frame.type === "reply.delta") {
      if (!el) { el = bubble("bot", ""); pending.set(frame.id, el); }
      el.textContent += frame.text;
    } else if (frame.type === "reply" || frame.type === "error") {
      if (!el) el = bubble("bot", "");
      el.textContent = frame.type === "reply" ? frame.text : frame.message;
      if (frame.type === "error") el.classList.add("error");
      const meta = document.createElement("small");
      meta.textContent = frame.msg_id ? `msg_id ${frame.msg_id}` : "";
      el.appendChild(meta);
      pending.delete(frame.id);
    }
    $("log").scrollTop = $("log").scrollHeight;
  };
}

function send(text) {
  if (!socket || socket.readyState !== WebSocket.OPEN) return false;
  const id = `web-${Date.now()}-${counter++}`;
  bubble("me", text);
  socket.send(JSON.stringify({type: "message", id, text, chat: "webchat"}));
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
