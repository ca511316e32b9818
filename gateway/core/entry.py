"""The pipeline as a channel, the console and the web door see it: one message in, one reply
out, and the guard chain alone for what is not a message. Typed as a protocol so that a
transport depends on this contract, never on the pipeline's parts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from gateway.core.message import Message, Reply
from gateway.guards.chain import Caller, Verdict
from gateway.models.base import OnDelta

if TYPE_CHECKING:
    from gateway.core.settings import Settings


class Entry(Protocol):
    """The pipeline as a channel sees it."""

    @property
    def settings(self) -> Settings: ...

    def handle(self, msg: Message, credential: str | None = None,
               on_delta: OnDelta | None = None,
               cancel: threading.Event | None = None,
               on_stored: Callable[[], None] | None = None) -> Reply:
        """Guard, store and answer one message; always returns a Reply. `on_stored` is
        called once the message is in the store (not for a refusal): a platform that keeps
        a message until it is confirmed (Telegram's update offset) confirms it then."""
        ...

    def admit(self, caller: Caller) -> Verdict:
        """The guard chain alone, for an entry that is not a message."""
        ...
