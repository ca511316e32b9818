"""The channel table: every channel the gateway can run, by its `channels:` config key.

A new channel is one module with a `Channel` subclass and one line here. Entries are import
paths so that reading config.yaml (the CLI does it often) never imports a channel's libraries.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.channels.base import Channel

CHANNELS: dict[str, str] = {
    "http": "gateway.channels.http:HttpChannel",
    "websocket": "gateway.channels.websocket:WebSocketChannel",
    "console": "gateway.api.console:ConsoleChannel",
    "enterprise_im": "gateway.channels.enterprise_im:EnterpriseImChannel",
}


def channel_class(name: str) -> type[Channel]:
    module, _, attribute = CHANNELS[name].partition(":")
    cls: type[Channel] = getattr(import_module(module), attribute)
    return cls
