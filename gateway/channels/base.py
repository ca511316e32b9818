"""The contract every channel adapter keeps (see the package docstring)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from gateway.channels.liveness import ago
from gateway.core.entry import Entry
from gateway.core.intake import Intake

if TYPE_CHECKING:
    from flask import Flask
    from flask_sock import Sock

    from gateway.core.outbound import Outbound
    from gateway.core.outbox import Outbox
    from gateway.core.store import Store
    from gateway.guards.token_cache import TokenCache
    from gateway.live.reload import Reloader
    from gateway.observe.metrics import Metrics


@dataclass(frozen=True)
class Services:
    """What the composition root hands every channel; a channel uses what it needs."""

    entry: Entry
    app: Flask  # the gateway's own web server, for channels that ride on it
    sock: Sock
    store: Store
    reloader: Reloader
    webui: Path
    channel_listing: Callable[[], list[dict[str, Any]]]  # the console lists the channels
    metrics: Metrics
    token_cache: TokenCache  # the authenticator's: a token ended by logout ends at once
    intake: Intake  # payload -> Message -> Reply, the same for every channel
    outbox: Outbox  # what push channels send after the request: stored, then sent
    mcp_listing: Callable[[], list[dict[str, Any]]]  # the MCP tool servers' states


@dataclass(frozen=True)
class ChannelStatus:
    """`connected`; `connecting` (the first attempt); `retrying` (why, since when);
    `stale` (connected, but nothing flowed within the channel's bound: see
    `channels.liveness`); `stopped`."""

    state: Literal["connected", "connecting", "retrying", "stale", "stopped"]
    detail: str = ""  # why it is retrying or stale, or where it listens
    since: float | None = None  # Unix time the channel entered this state

    def __str__(self) -> str:
        when = ""
        if self.since is not None and self.state != "stopped":
            when = f"since {time.strftime('%H:%M:%S', time.localtime(self.since))} " \
                   f"({ago(time.time() - self.since)})"
        text = "; ".join(part for part in (when, self.detail) if part)
        return f"{self.state}: {text}" if text else self.state


class ChannelOptions(BaseModel):
    """`channels.<name>:` in config.yaml; a channel with more settings subclasses this."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True


class SwitchedOnByConfig(ChannelOptions):
    """Options of a channel the guide writes without `enabled:`: writing its section switches
    it on (when `on_key` names a key, writing that key does, e.g. a bot token)."""

    on_key: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _on_when_configured(cls, data: Any) -> Any:
        if isinstance(data, dict) and "enabled" not in data:
            return {**data, "enabled": bool(data.get(cls.on_key) if cls.on_key else data)}
        return data


class Channel(ABC):
    name: str
    Options: type[ChannelOptions] = ChannelOptions
    # A chat platform authenticates as the platform (its bot token), not as the person
    # writing: the stranger policy checks each of its senders.
    chat_platform = False

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        self.services = services
        self.entry = services.entry
        self.intake = services.intake
        self.options = options

    @abstractmethod
    def start(self) -> None:
        """Begin receiving; calling it again after a drop reconnects."""

    @abstractmethod
    def stop(self) -> None:
        """Stop receiving and release connections; in-flight replies are the pipeline's."""

    @abstractmethod
    def status(self) -> ChannelStatus: ...

    def stale_for(self) -> float | None:
        """Seconds this channel has been stale (see `channels.liveness`), or None: only
        channels that keep evidence of flow can tell."""
        return None

    def configure(self, options: ChannelOptions) -> None:
        """New options from a config reload: by default, stop and start again with them."""
        was_running = self.status().state != "stopped"
        if was_running:
            self.stop()
        self.options = options
        if options.enabled:
            self.start()


class PushChannel(Channel):
    """A channel that sends messages on its own connection (MQTT, a platform's send API).

    It never sends by itself: what it sends is an outbound row of the outbox
    (`gateway.core.outbox`), whose sender for this channel calls `deliver`.
    """

    @abstractmethod
    def deliver(self, outbound: Outbound) -> None:
        """Send one outbound message to its chat. Return when the platform took it; raise
        `RetryLater` (429, 5xx, network; with the platform's Retry-After) or
        `DeliveryRefused` (it never will). Where the platform has an idempotency key, the
        outbound id is it. A channel that cannot carry files says so in the text it sends."""

    def push_problem(self) -> str | None:
        """Why this channel cannot send messages now (a sentence naming the config key to
        set), or None."""
        return None

    def knows_chat(self, chat: str) -> bool:
        """Whether the gateway may start a message in `chat`: by default, a chat it has
        answered on this channel (it has a session)."""
        return self.services.store.latest_session(self.name, chat) is not None


class WebChannel(Channel):
    """A channel served by the gateway's own web server: its routes exist from the start
    (Flask cannot add routes later), and answer `unavailable` while it is stopped."""

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        self.running = False

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def status(self) -> ChannelStatus:
        return ChannelStatus("connected") if self.running else ChannelStatus(
            "stopped", f"channels.{self.name}.enabled is false")

    def configure(self, options: ChannelOptions) -> None:
        """Routes stay; only whether they answer changes."""
        self.options = options
        if options.enabled:
            self.start()
        else:
            self.stop()
