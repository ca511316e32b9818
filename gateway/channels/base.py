"""The contract every channel adapter keeps (see the package docstring)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Protocol

from gateway.message import Message, Reply
from gateway.models.base import OnDelta


class Submit(Protocol):
    """The pipeline's entry: answer one message (streaming pieces to `on_delta`)."""

    def __call__(self, msg: Message, on_delta: OnDelta | None = None,
                 cancel: threading.Event | None = None) -> Reply: ...


class Channel(ABC):
    name: str

    def __init__(self, submit: Submit) -> None:
        self.submit = submit

    @abstractmethod
    def start(self) -> None:
        """Begin receiving; calling it again after a drop reconnects."""

    @abstractmethod
    def stop(self) -> None:
        """Stop receiving and release connections; in-flight replies are the pipeline's."""

    @abstractmethod
    def deliver(self, reply: Reply) -> None:
        """Send one reply back to the chat its message came from."""
