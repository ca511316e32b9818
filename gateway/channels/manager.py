"""The running channels: built from the table, started, stopped and reconfigured on reload."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from gateway.channels.base import Channel, ChannelOptions, Services
from gateway.channels.table import CHANNELS, channel_class

log = logging.getLogger(__name__)


class ChannelSet:
    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}

    def build(self, services: Services, options: Mapping[str, BaseModel]) -> None:
        """Create every channel of the table (routes of web channels must exist from the
        start, even for a channel switched off until a reload switches it on)."""
        for name in CHANNELS:
            chosen = options[name]
            assert isinstance(chosen, ChannelOptions)
            self.channels[name] = channel_class(name)(services, chosen)

    def start(self) -> None:
        for channel in self.channels.values():
            if channel.options.enabled:
                channel.start()

    def apply(self, options: Mapping[str, BaseModel]) -> None:
        """New options from a config reload; a channel whose options did not change is left
        alone. A channel that fails to start is logged, and the others go on."""
        for name, channel in self.channels.items():
            new = options[name]
            assert isinstance(new, ChannelOptions)
            if new == channel.options:
                continue
            try:
                channel.configure(new)
                log.info("channel %s reconfigured: %s", name, channel.status())
            except Exception:
                log.exception("channel %s failed to apply its new options", name)

    def stop(self) -> list[str]:
        """Stop every channel; returns each failure instead of stopping at the first."""
        problems: list[str] = []
        for name, channel in self.channels.items():
            try:
                channel.stop()
            except Exception as e:  # collect, keep stopping the rest
                log.exception("channel %s failed to stop", name)
                problems.append(f"channel {name}: {e}")
        return problems

    def listing(self) -> list[dict[str, Any]]:
        """For `GET /api/v1/channels` and `moltbot channels list`."""
        rows = []
        for name, channel in self.channels.items():
            status = channel.status()
            rows.append({"name": name, "enabled": channel.options.enabled,
                         "state": status.state, "since": status.since,
                         "detail": status.detail, "status": str(status)})
        return rows

    def stale(self) -> dict[str, float]:
        """Each stale channel and for how long (seconds), for the `channel_stale` alert."""
        found = {}
        for name, channel in self.channels.items():
            seconds = channel.stale_for()
            if seconds is not None:
                found[name] = seconds
        return found
