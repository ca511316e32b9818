"""The values that travel through the pipeline: `Message` in, `Reply` out, `Span`s on the way.

This module imports nothing else of ours so that every stage (channels, guards, router, model
clients) can depend on it without depending on each other.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field


def new_msg_id() -> str:
    """A short, sortable, unguessable id: millisecond time then randomness."""
    return f"m{int(time.time() * 1000):x}{secrets.token_hex(5)}"


@dataclass
class Message:
    """One inbound message, as a channel adapter understood it.

    `client_id` is the sender's own id for the message (WS frame `id`, HTTP `Idempotency-Key`):
    a retry carrying the same one is answered from the store instead of calling the model again.
    """

    channel: str
    sender: str
    chat: str
    text: str
    client_id: str | None = None
    principal: str = ""
    id: str = field(default_factory=new_msg_id)
    received_at: float = field(default_factory=time.time)


@dataclass
class Reply:
    """The one answer to a `Message`, addressed back to the channel and chat it came from.

    `error` is a stable code (see ARCHITECTURE.md's public contracts) when the reply reports a
    failure; `text` is then a sentence for the person that says what to fix.
    """

    msg_id: str
    channel: str
    chat: str
    text: str
    session: str = ""
    client_id: str | None = None
    error: str | None = None
    status: int = 200


@dataclass(frozen=True)
class Span:
    """One timed step of a message's way through the gateway.

    `start_ms` is the offset from the message's arrival, so a trace reads as a timeline.
    """

    step: str
    start_ms: float
    duration_ms: float
    outcome: str
    detail: str = ""


class Trace:
    """Collects the spans of one message; the pipeline stores them when the message is done."""

    def __init__(self, msg_id: str, started: float | None = None) -> None:
        self.msg_id = msg_id
        self.started = time.perf_counter() if started is None else started
        self.spans: list[Span] = []

    def step(self, name: str) -> SpanTimer:
        """Time a block: `with trace.step("model") as s: ...; s.outcome = "ok"`."""
        return SpanTimer(self, name)

    def add(self, name: str, begin: float, outcome: str, detail: str = "") -> None:
        now = time.perf_counter()
        self.spans.append(
            Span(
                step=name,
                start_ms=(begin - self.started) * 1000,
                duration_ms=(now - begin) * 1000,
                outcome=outcome,
                detail=detail,
            )
        )


    def add_at(self, name: str, begin: float, duration_ms: float, outcome: str,
               detail: str = "") -> None:
        """A span measured elsewhere (a skill host), placed on this trace's timeline."""
        self.spans.append(Span(name, (begin - self.started) * 1000, duration_ms, outcome,
                               detail))


class SpanTimer:
    """Context manager behind `Trace.step`; an exception marks the span `error` and propagates."""

    def __init__(self, trace: Trace, name: str) -> None:
        self.trace = trace
        self.name = name
        self.outcome = "ok"
        self.detail = ""
        self.begin = 0.0

    def __enter__(self) -> SpanTimer:
        self.begin = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if exc is not None and self.outcome == "ok":
            self.outcome = "error"
            self.detail = self.detail or f"{type(exc).__name__}: {exc}"[:300]
        self.trace.add(self.name, self.begin, self.outcome, self.detail)
