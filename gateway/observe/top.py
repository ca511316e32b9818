"""`moltbot top`: the gateway's live figures in the terminal, from `GET /api/v1/stats`.

`render` turns one stats snapshot into a rich renderable and does nothing else, so a test
can print a frame to a recording console; `watch` refreshes it every second until Ctrl-C.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text


class StatsUnavailable(Exception):
    """No stats from the gateway; the message says what to do."""


class StatsUnauthorized(StatsUnavailable):
    """The gateway wants a token for its stats."""


def fetch_stats(url: str, token: str | None = None, window: int = 60) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(f"{url}/api/v1/stats", params={"window": window},
                             headers=headers, timeout=5.0)
    except httpx.HTTPError as e:
        raise StatsUnavailable(f"No gateway answers at {url} ({type(e).__name__}); start it "
                               f"with `moltbot gateway start`.") from e
    if response.status_code == 401:
        raise StatsUnauthorized(f"{url} wants a token for its stats: pass --token (or set "
                                f"MOLTBOT_TOKEN) with one from `moltbot dashboard --token-gen`.")
    if response.status_code == 404:
        raise StatsUnavailable(f"{url} has no /api/v1/stats: is it a Moltbot gateway of this "
                               f"version?")
    if response.status_code != 200:
        raise StatsUnavailable(f"{url}/api/v1/stats answered HTTP {response.status_code}: "
                               f"{response.text[:200]}")
    return response.json()


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def _latencies(latency: dict[str, float | None]) -> list[str]:
    return [_ms(latency.get(k)) for k in ("p50", "p95", "p99")]


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", expand=False,
                  pad_edge=False, box=None, header_style="dim")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right", overflow="fold")
    return table


def _summary(stats: dict[str, Any]) -> Table:
    msgs, calls = stats["messages"], stats["model_calls"]
    proc, system = stats["process"], stats["system"]
    connections = stats["connections"]
    table = Table.grid(padding=(0, 3))
    for _ in range(4):
        table.add_column(overflow="fold")
    error_style = "red" if msgs["errors"] else ""
    table.add_row(
        f"messages/min [bold]{msgs['per_min']:g}[/]",
        f"errors [{error_style or 'default'}]{msgs['errors']} ({_pct(msgs['error_rate'])})[/]",
        f"in flight [bold]{stats['in_flight']}[/]",
        f"connections [bold]{sum(connections.values())}[/]"
        + (f" ({', '.join(f'{k} {v}' for k, v in connections.items())})" if connections
           else ""))
    table.add_row("latency p50/p95/p99", " / ".join(_latencies(msgs["latency_ms"])),
                  "model p50/p95/p99", " / ".join(_latencies(calls["latency_ms"])))
    table.add_row(f"model calls/min {calls['per_min']:g}",
                  f"failed {calls['failures']} ({_pct(calls['failure_rate'])})",
                  f"tokens in/out {calls['tokens']['prompt']:,} / "
                  f"{calls['tokens']['completion']:,}", "")
    table.add_row(f"gateway CPU {proc['cpu_percent']:.0f}%",
                  f"RSS {proc['rss_bytes'] / 2**20:.0f} MiB ({proc['processes']} proc)",
                  f"machine CPU {system['cpu_percent']:.0f}%",
                  f"memory {system['memory_percent']:.0f}%")
    return table


def render(stats: dict[str, Any], url: str) -> RenderableType:
    """One frame: the summary, then per channel, per model, per endpoint, busiest sessions."""
    at = datetime.fromtimestamp(stats["at"]).strftime("%H:%M:%S")
    window = f"{stats['window_s']:g}"
    parts: list[RenderableType] = [
        Text.from_markup(f"[bold]Moltbot top[/]  {url}  {at}  (last {window} s, "
                         f"pid {stats['process']['pid']})"),
        _summary(stats)]
    if not stats["messages"]["count"] and not stats["model_calls"]["count"]:
        parts.append(Text(f"\nNo messages in the last {window} s. Send one (e.g. in the "
                          f"console at {url}/) and watch it appear here.", style="dim"))
        return Group(*parts)

    channels = _table("\nChannels", "channel", "msg/min", "errors", "p50", "p95", "p99",
                      "conns", "tokens in/out")
    for name, row in stats["channels"].items():
        tokens = row.get("tokens", {"prompt": 0, "completion": 0})
        channels.add_row(name, f"{row['per_min']:g}", _pct(row["error_rate"]),
                         *_latencies(row["latency_ms"]), str(stats["connections"].get(name, 0)),
                         f"{tokens['prompt']:,} / {tokens['completion']:,}")
    parts.append(channels)

    if stats["models"]:
        models = _table("\nModels", "model", "msg/min", "p95", "calls/min", "failed",
                        "model p95", "tokens in/out")
        for name, row in stats["models"].items():
            call = row.get("calls") or {"per_min": 0, "failure_rate": 0.0, "latency_ms": {}}
            tokens = row.get("tokens", {"prompt": 0, "completion": 0})
            models.add_row(name, f"{row['per_min']:g}", _ms(row["latency_ms"]["p95"]),
                           f"{call['per_min']:g}", _pct(call["failure_rate"]),
                           _ms(call["latency_ms"].get("p95")),
                           f"{tokens['prompt']:,} / {tokens['completion']:,}")
        parts.append(models)

    if stats["endpoints"]:
        endpoints = _table("\nEndpoints", "endpoint", "model", "calls/min", "failed", "p95")
        for row in stats["endpoints"]:
            endpoints.add_row(row["endpoint"], row["model"], f"{row['per_min']:g}",
                              _pct(row["failure_rate"]), _ms(row["latency_ms"]["p95"]))
        parts.append(endpoints)

    if stats["sessions"]:
        sessions = _table("\nBusiest sessions", "session", "messages")
        for row in stats["sessions"]:
            sessions.add_row(row["session"], str(row["messages"]))
        parts.append(sessions)
    return Group(*parts)


def watch(fetch: Callable[[], dict[str, Any]], url: str, console: Console,
          interval: float = 1.0) -> None:
    """Redraw every `interval` seconds until Ctrl-C; a gateway that stops answering is shown
    as such and polled again, not a crash."""
    with Live(console=console, auto_refresh=False, screen=False) as live:
        try:
            while True:
                try:
                    frame: RenderableType = render(fetch(), url)
                except StatsUnavailable as e:
                    frame = Text(f"{e}\nRetrying every {interval:g} s; Ctrl-C quits.",
                                 style="yellow")
                live.update(frame, refresh=True)
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
