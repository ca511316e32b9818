// Overview: live figures from /api/v1/stats every 2 s as uPlot charts, and token usage per
// day, model and channel from /api/v1/usage (CSV export is the same URL with format=csv).
import uPlot from "../../vendor/uplot/uPlot.esm.js";
import {api} from "../api.js";
import {breakable, empty, fmtClock, fmtMs, h} from "../dom.js";
import {t} from "../i18n.js";

const POLL_MS = 2000;
const WINDOW_S = 10;
const KEEP = 150; // points: five minutes at one every 2 s
const DAYS = 30;

function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

// The y axis is as wide as its widest label (a fixed width cut "12.5 ms" off with little traffic).
function axisSize(u, values, axisIdx, cycleNum) {
  const axis = u.axes[axisIdx];
  if (cycleNum > 1) return axis._size;
  u.ctx.font = axis.font[0];
  const widest = Math.max(0, ...(values || []).map((v) => u.ctx.measureText(v).width));
  return Math.ceil(axis.ticks.size + axis.gap + widest / devicePixelRatio) + 4;
}


// One chart over a fixed set of series; `grow` rebuilds it when a new series name appears.
class LiveChart {
  constructor(host, unit) { this.host = host; this.unit = unit; this.names = []; this.data = [[]]; this.plot = null; }

  push(at, values) {
    const names = Object.keys(values);
    if (names.some((n) => !this.names.includes(n))) this.grow([...new Set([...this.names, ...names])]);
    this.data[0].push(at);
    this.names.forEach((n, i) => this.data[i + 1].push(values[n] ?? null));
    if (this.data[0].length > KEEP) this.data.forEach((s) => s.shift());
    if (this.plot) this.plot.setData(this.data);
  }

  grow(names) {
    const old = this.names;
    this.data = [this.data[0], ...names.map((n) => {
      const i = old.indexOf(n);
      return i >= 0 ? this.data[i + 1] : this.data[0].map(() => null);
    })];
    this.names = names;
    this.draw();
  }

  draw() {
    if (this.plot) this.plot.destroy();
    if (!this.names.length) return;
    const colors = ["--c1", "--c2", "--c3", "--c4", "--c5", "--c6"].map(css);
    const axis = {stroke: css("--muted"), grid: {stroke: css("--border"), width: 1}, ticks: {stroke: css("--border")}};
    const unit = this.unit;
    this.plot = new uPlot({
      width: Math.max(240, this.host.clientWidth), height: 200,
      series: [{label: t("ov.time"), value: (u, v) => (v === null || v === undefined ? "–" : fmtClock(v, true))}, ...this.names.map((n, i) => ({label: n, stroke: colors[i % colors.length], width: 2, spanGaps: true,
        value: (u, v) => (v === null || v === undefined ? "–" : unit === "ms" ? fmtMs(v) : unit === "%" ? `${(v * 100).toFixed(1)}%` : v)}))],
      axes: [{...axis, space: 64, values: (u, splits, i, space, incr) => splits.map((s) => fmtClock(s, incr < 60))},
        {...axis, size: axisSize, values: (u, vals) => vals.map((v) => (unit === "%" ? `${(v * 100).toFixed(0)}%` : unit === "ms" ? fmtMs(v) : String(v)))}],
      scales: {x: {time: true, range: (u, min, max) => {
        const end = max ?? Date.now() / 1000; // at most the points kept, at least a minute
        return [Math.min(end - 60, Math.max(min ?? end, end - (KEEP * POLL_MS) / 1000)), end];
      }}, y: {range: (u, min, max) => [0, Math.max(max || 0, unit === "%" ? 0.05 : 1)]}},
      legend: {live: true},
      cursor: {drag: {x: false, y: false}},
    }, this.data, this.host);
  }

  resize() { if (this.plot) this.plot.setSize({width: Math.max(240, this.host.clientWidth), height: 200}); }
}

function stat(label, id) {
  return h("div.card.stat", {}, h("div.label", {}, label), h("div.value", {id}, "–"), h("div.sub", {id: `${id}-sub`}, ""));
}

function chartCard(title, id) {
  return h("section.card", {"aria-label": title}, h("h2", {}, title), h("div.chart", {id}));
}

function summaryTable(rows, kind) {
  if (!rows.length) return empty(t("ov.no_traffic"));
  return h("div.table-wrap", {}, h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, t(kind === "channel" ? "col.channel" : "col.model")),
      h("th.num", {}, t("col.per_min")), h("th.num", {}, t("col.count")), h("th.num", {}, t("col.errors")),
      h("th.num.opt", {}, t("col.p50")), h("th.num", {}, t("col.p95")), h("th.num.opt", {}, t("col.p99")))),
    h("tbody", {}, rows.map(([name, r]) => h("tr", {}, h("td", {}, name), h("td.num", {}, r.per_min),
      h("td.num", {}, r.count), h("td.num", {}, r.errors), h("td.num.opt", {}, fmtMs(r.latency_ms.p50)),
      h("td.num", {}, fmtMs(r.latency_ms.p95)), h("td.num.opt", {}, fmtMs(r.latency_ms.p99)))))));
}

async function loadChannels(host) {
  const body = await api("/api/v1/channels");
  host.replaceChildren(h("h2", {}, t("ov.channels")), h("div.table-wrap", {}, h("table", {id: "channels"},
    h("thead", {}, h("tr", {}, h("th", {}, t("col.channel")), h("th", {}, t("ov.status")))),
    h("tbody", {}, body.channels.map((c) => {
      const state = c.state || c.status.split(":")[0];
      const badge = {connected: "ok", connecting: "warning", retrying: "warning", stale: "error"}[state] || "debug";
      return h("tr", {dataset: {channel: c.name, state}}, h("td.name", {}, c.name),
        h("td", {}, h(`span.badge.${badge}`, {}, t(`ov.${state}`)),
          c.status.includes(":") ? h("div.muted.detail", {}, breakable(c.status.slice(c.status.indexOf(":") + 1).trim(), ".")) : ""));
    })))));
}

async function loadUsage(host) {
  const body = await api(`/api/v1/usage?days=${DAYS}`);
  const csv = h("a.button", {href: `/api/v1/usage?days=${DAYS}&format=csv`, download: ""}, "↓ ", t("ov.csv"));
  const rows = body.rows;
  host.replaceChildren(h("h2", {}, t("ov.tokens"), h("span.muted", {}, t("ov.days", DAYS)), h("span.spacer"), csv),
    rows.length ? h("div.table-wrap", {}, h("table", {id: "usage"},
      h("thead", {}, h("tr", {}, h("th", {}, t("col.day")), h("th", {}, t("col.model")), h("th", {}, t("col.channel")),
        h("th.num.opt", {}, t("col.count")), h("th.num", {}, t("col.prompt")), h("th.num", {}, t("col.completion")))),
      h("tbody", {}, rows.map((r) => h("tr", {}, h("td.day", {}, h("span.opt", {}, r.day.slice(0, 5)), r.day.slice(5)), h("td", {}, r.model),
        h("td", {}, r.channel), h("td.num.opt", {}, r.messages), h("td.num", {}, r.prompt.toLocaleString()), h("td.num", {}, r.completion.toLocaleString()))))))
      : empty(t("ov.no_tokens")));
}

export function mount(main) {
  const problem = h("p.error-text", {role: "status"});
  main.append(
    h("p.muted", {}, t("ov.window", WINDOW_S)), problem,
    h("div.stats", {}, stat(t("ov.msgs"), "s-rate"), stat(t("ov.latency"), "s-p95"), stat(t("ov.model_latency"), "s-mp95"),
      stat(t("ov.errors"), "s-err"), stat(t("ov.inflight"), "s-inflight"), stat(t("ov.conns"), "s-conns")),
    h("div.grid", {}, chartCard(t("ov.msgs"), "c-rate"), chartCard(t("ov.latency"), "c-lat"),
      chartCard(t("ov.model_latency"), "c-mlat"), chartCard(t("ov.errors"), "c-err")),
    h("div.grid", {}, h("section.card", {id: "by-channel"}, h("h2", {}, t("ov.by_channel"))),
      h("section.card", {id: "by-model"}, h("h2", {}, t("ov.by_model")))),
    h("div.grid.wide-left", {}, h("section.card", {id: "tokens"}, h("h2", {}, t("ov.tokens")), h("p.muted", {}, t("loading"))),
      h("section.card", {id: "channel-status"}, h("h2", {}, t("ov.channels")))),
  );
  const charts = {rate: new LiveChart(main.querySelector("#c-rate"), ""), lat: new LiveChart(main.querySelector("#c-lat"), "ms"),
    mlat: new LiveChart(main.querySelector("#c-mlat"), "ms"), err: new LiveChart(main.querySelector("#c-err"), "%")};
  const set = (id, value, sub = "") => { main.querySelector(`#${id}`).textContent = value; main.querySelector(`#${id}-sub`).textContent = sub; };

  let stopped = false;  // a poll still in flight when the page is left must draw nothing
  async function poll() {
    let s;
    try { s = await api(`/api/v1/stats?window=${WINDOW_S}`); problem.textContent = ""; }
    catch (err) { problem.textContent = t("ov.stats_error", err.message); return; }
    if (stopped) return;
    const at = s.at;
    const m = s.messages, calls = s.model_calls;
    const conns = Object.values(s.connections).reduce((a, b) => a + b, 0);
    set("s-rate", m.per_min, `${m.count} / ${s.window_s}s`);
    set("s-p95", fmtMs(m.latency_ms.p95), `p50 ${fmtMs(m.latency_ms.p50)} · p99 ${fmtMs(m.latency_ms.p99)}`);
    set("s-mp95", fmtMs(calls.latency_ms.p95), `p50 ${fmtMs(calls.latency_ms.p50)} · p99 ${fmtMs(calls.latency_ms.p99)}`);
    set("s-err", `${(m.error_rate * 100).toFixed(1)}%`, `${m.errors} / ${m.count}`);
    set("s-inflight", s.in_flight);
    set("s-conns", conns, Object.entries(s.connections).map(([k, v]) => `${k} ${v}`).join(" · "));
    const rates = {[t("ov.all")]: m.per_min};
    for (const [name, c] of Object.entries(s.channels)) rates[name] = c.per_min;
    charts.rate.push(at, rates);
    charts.lat.push(at, {p50: m.latency_ms.p50, p95: m.latency_ms.p95, p99: m.latency_ms.p99});
    const model = {p50: calls.latency_ms.p50, p95: calls.latency_ms.p95, p99: calls.latency_ms.p99};
    for (const [name, r] of Object.entries(s.models)) if (r.calls) model[`${name} p95`] = r.calls.latency_ms.p95;
    charts.mlat.push(at, model);
    const errs = {[t("ov.err_messages")]: m.error_rate, [t("ov.err_calls")]: calls.failure_rate};
    charts.err.push(at, errs);
    main.querySelector("#by-channel").replaceChildren(h("h2", {}, t("ov.by_channel")), summaryTable(Object.entries(s.channels), "channel"));
    main.querySelector("#by-model").replaceChildren(h("h2", {}, t("ov.by_model")), summaryTable(Object.entries(s.models), "model"));
  }

  const channelsCard = main.querySelector("#channel-status");
  const refreshChannels = () => loadChannels(channelsCard).catch((err) => channelsCard.append(h("p.error-text", {}, err.message)));
  let ticks = 0;
  const timer = setInterval(() => { poll(); if (++ticks % 5 === 0) refreshChannels(); }, POLL_MS);
  poll();
  refreshChannels();
  loadUsage(main.querySelector("#tokens")).catch((err) => { main.querySelector("#tokens").append(h("p.error-text", {}, err.message)); });
  const onResize = () => Object.values(charts).forEach((c) => c.resize());
  const onTheme = () => Object.values(charts).forEach((c) => c.draw());
  window.addEventListener("resize", onResize);
  window.addEventListener("moltbot:theme", onTheme);
  return () => {
    stopped = true;
    clearInterval(timer);
    window.removeEventListener("resize", onResize);
    window.removeEventListener("moltbot:theme", onTheme);
    Object.values(charts).forEach((c) => c.plot && c.plot.destroy());
  };
}
