"""A push channel's connection state as `channels list` and the console show it: what the
connection says (connecting, connected, retrying: why) judged by what flowed on it
(`channels.liveness`), for the channels that keep their own connection (Telegram, Slack)."""

from __future__ import annotations

import time

from gateway.channels.base import ChannelStatus
from gateway.channels.liveness import Liveness

State = tuple[str, str, float]  # (state, detail, since: Unix time it entered the state)


def moved(current: State, state: str, detail: str) -> State:
    """`current` after the connection says `state` / `detail` (since kept while the state
    stays the same)."""
    if current[0] == state and current[1] == detail:
        return current
    return (state, detail, current[2] if current[0] == state else time.time())


def judged(current: State, liveness: Liveness, silent: str,
           stale_since: float | None) -> ChannelStatus:
    """A running channel's status: a connection silent beyond its bound is `stale` (`silent`
    says what stayed silent for how long, and the key that sets the bound); a connected one
    lists its evidence."""
    state, detail, since = current
    if state == "connected" and liveness.is_stale:
        restart = "restarted once" if liveness.restarted else "restarting"
        return ChannelStatus("stale", f"{silent}; {restart}; {liveness.describe()}",
                             stale_since)
    if state == "connected":
        detail = f"{detail}; {liveness.describe()}"
    return ChannelStatus(state, detail, since)  # type: ignore[arg-type]
