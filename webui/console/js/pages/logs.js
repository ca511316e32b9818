// Logs: a live tail over /api/v1/logs/stream, filtered by keyword and lowest level, with pause
// and "load older lines"; #/logs/msg/<msg_id> shows one message's lines from both files.
import {api, socketUrl} from "../api.js";
import {empty, h} from "../dom.js";
import {t} from "../i18n.js";

const LEVELS = ["debug", "info", "warning", "error", "critical"];
const MAX_LINES = 2000;

function shown(line, keyword, level) {
  if (level && LEVELS.indexOf(line.level) < LEVELS.indexOf(level)) return false;
  const hay = `${line.message} ${line.msg_id || ""}`.toLowerCase();
  return !keyword || hay.includes(keyword.toLowerCase());
}

function row(line) {
  return h("div.logline", {dataset: {level: line.level}},
    h("span.when", {}, line.time.replace("T", " ").slice(0, 23)),
    h("span", {}, h("span.badge." + line.level, {}, line.level)),
    h("span.msg", {}, line.message,
      line.msg_id ? h("a", {href: `#/sessions/msg/${encodeURIComponent(line.msg_id)}`, title: t("ss.trace")}, `↗ ${t("ss.trace")}`) : null));
}

function mountMessage(main, msgId) {
  const list = h("div.card.loglist", {id: "loglist", role: "log"});
  main.append(h("div.toolbar", {}, h("a.button", {href: "#/logs"}, "← ", t("logs.back")),
    h("a.button", {href: `#/sessions/msg/${encodeURIComponent(msgId)}`}, t("ss.trace"))),
  h("h2", {}, t("logs.for", msgId)), list);
  api(`/api/v1/logs?msg_id=${encodeURIComponent(msgId)}`).then((body) => {
    list.replaceChildren(...(body.lines.length ? body.lines.map(row) : [empty(t("logs.empty"))]));
  }).catch((err) => list.replaceChildren(h("p.error-text", {}, err.message)));
}

export function mount(main, args) {
  if (args[0] === "msg" && args[1]) return mountMessage(main, args[1]);
  const state = {lines: [], paused: false, before: null, end: null, socket: null, closed: false, source: "gateway"};
  const keyword = h("input.grow", {id: "log-keyword", type: "search", placeholder: t("logs.keyword"), "aria-label": t("logs.keyword")});
  const level = h("select", {id: "log-level", "aria-label": t("logs.level")},
    h("option", {value: ""}, t("logs.all")), LEVELS.map((l) => h("option", {value: l}, l)));
  const source = h("select", {id: "log-source", "aria-label": t("logs.source")},
    h("option", {value: "gateway"}, "gateway.log"), h("option", {value: "access"}, "access.log"));
  const pause = h("button", {id: "log-pause", type: "button", "aria-pressed": "false"}, t("logs.pause"));
  const status = h("span.pill", {id: "log-status", role: "status"}, t("logs.connecting"));
  const older = h("button", {id: "log-older", type: "button"}, t("logs.older"));
  const list = h("div.card.loglist", {id: "loglist", role: "log", "aria-live": "polite"});
  main.append(h("div.toolbar", {}, keyword, level, source, pause, status), list, h("div.toolbar", {}, older));

  function render() {
    const wanted = state.lines.filter((l) => shown(l, keyword.value.trim(), level.value));
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.replaceChildren(...(wanted.length ? wanted.map(row) : [empty(t("logs.empty"))]));
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  async function loadOlder() {
    if (state.before === 0) { status.textContent = t("logs.start"); return; }
    const q = new URLSearchParams({source: state.source});
    if (state.before !== null) q.set("before", state.before);
    const body = await api(`/api/v1/logs?${q}`);
    if (state.before === null) state.end = body.end;
    state.before = body.before;
    const known = new Set(state.lines.map((l) => l.offset));
    state.lines = [...body.lines.filter((l) => !known.has(l.offset)), ...state.lines];
    render();
  }

  function connect() {
    if (state.closed) return;
    const from = state.end ?? "";
    state.end = null; // a reconnect starts at the file's end
    const ws = new WebSocket(socketUrl(`/api/v1/logs/stream?source=${state.source}&from=${from}`));
    state.socket = ws;
    ws.onopen = () => { status.className = state.paused ? "pill paused" : "pill live"; status.textContent = t(state.paused ? "logs.paused" : "logs.live"); };
    ws.onmessage = (e) => {
      const frame = JSON.parse(e.data);
      if (frame.type !== "lines") return;
      state.lines.push(...frame.lines);
      if (state.lines.length > MAX_LINES) state.lines.splice(0, state.lines.length - MAX_LINES);
      if (!state.paused) render();
    };
    ws.onclose = () => {
      if (state.closed || state.socket !== ws) return;
      status.className = "pill"; status.textContent = t("logs.connecting");
      setTimeout(connect, 2000);
    };
  }

  keyword.addEventListener("input", render);
  level.addEventListener("change", render);
  source.addEventListener("change", () => {
    state.source = source.value; state.lines = []; state.before = null; state.end = null;
    if (state.socket) state.socket.close();
    loadOlder().then(connect);
  });
  pause.addEventListener("click", () => {
    state.paused = !state.paused;
    pause.textContent = t(state.paused ? "logs.resume" : "logs.pause");
    pause.setAttribute("aria-pressed", String(state.paused));
    status.className = state.paused ? "pill paused" : "pill live";
    status.textContent = t(state.paused ? "logs.paused" : "logs.live");
    if (!state.paused) render();
  });
  older.addEventListener("click", () => loadOlder().catch((err) => { status.textContent = err.message; }));
  loadOlder().catch(() => {}).then(connect);
  return () => { state.closed = true; if (state.socket) state.socket.close(); };
}
