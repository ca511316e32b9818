"""The values that travel through the pipeline: `Message` in, `Reply` out, `Span`s on the way.

This module imports nothing else of ours so that every stage (channels, guards, router, model
clients) can depend on it without depending on each other.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any


def new_msg_id() -> str:
    """A short, sortable, unguessable id: millisecond time then randomness."""
    return f"m{int(time.time() * 1000):x}{secrets.token_hex(5)}"


def new_file_id() -> str:
    """A file's public handle (its download URL): unguessable, never its path."""
    return f"f{secrets.token_hex(10)}"


# The error codes a `Reply` may carry, and what each means to the sender. They are the whole
# vocabulary: each channel maps them to its own form (an HTTP status, a WebSocket error frame,
# an MQTT error payload, a sentence on a chat platform), so nothing here knows a transport.
ERROR_CODES: dict[str, str] = {
    "bad_request": "the message is malformed; the text says what to fix",
    "unauthorized": "no valid credential",
    "forbidden": "the credential or address may not use this entry",
    "blocked": "the sender is blocked: a chat platform answers nothing",
    "not_found": "no such thing",
    "payload_too_large": "the message is over the size limit",
    "request_timeout": "the request did not arrive within gateway.request_timeout",
    "rate_limited": "too many messages; `retry_after` says when to try again",
    "busy": "earlier messages are still being answered; retry shortly",
    "shutting_down": "the gateway is restarting; retry in a few seconds",
    "unavailable": "the entry is switched off or the gateway is full",
    "cancelled": "the sender went away before the answer was ready",
    "model_unavailable": "no endpoint of the model could answer",
    "model_error": "the model refused the call",
    "skill_error": "the skill failed while answering",
    "internal_error": "the gateway failed; the msg_id finds the details in the log",
}


@dataclass(frozen=True)
class Attachment:
    """A file that came with a message or goes with a reply, kept inside the workspace.

    `path` is relative to the workspace (POSIX form), so it means the same file wherever the
    workspace is; `name` is what people see (the sender's own name, made safe). `id` is the
    public handle a client downloads it by (`GET /api/v1/attachments/<id>`).
    """

    name: str
    media_type: str
    size: int
    path: str
    sha256: str = ""
    id: str = field(default_factory=new_file_id)


@dataclass(frozen=True)
class ClientContext:
    """What a client that keeps its own conversation sends with each message (the
    OpenAI-compatible entry, `channels/openai.py`).

    `messages` is the whole conversation as the client sent it, in the neutral chat shape of
    `gateway.models.base.Provider` (system, user, assistant and tool turns, a tool round trip
    as `tool_calls` / `tool_call_id`, a user turn's images as `images`), its text already read
    from any list of parts. When a message carries one, the model is given these messages
    instead of the session's stored turns; the message's `text` (its last user turn) is still
    what the router and the knowledge search read. `model` is the configured model the client
    asked for (None: the default). `tools` are functions the client offers (`{"type":
    "function", "function": {...}}`): the model may call them, and such a call comes back in
    `Reply.tool_calls` for the client to run; the gateway never runs them. A message with one
    carries no `files`: its images are in `messages`.
    """

    messages: tuple[dict[str, Any], ...]
    model: str | None = None
    tools: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Message:
    """One inbound message, as a channel adapter understood it.

    `client_id` is the sender's own id for the message (WS frame `id`, HTTP `Idempotency-Key`,
    a platform's message id): a retry carrying the same one is answered from the store instead
    of calling the model again. `peer` is the network address the message came from (for
    address allowlists and rate limits); `principal` is who the guard chain found the sender to
    be, empty until the chain has admitted the message. `files` are what the sender attached,
    already stored in the workspace's inbox (`text` may then be empty). `client_context` is
    set only by channels whose clients send their own conversation (see `ClientContext`).
    """

    channel: str
    sender: str
    chat: str
    text: str
    client_id: str | None = None
    principal: str = ""
    peer: str = ""
    id: str = field(default_factory=new_msg_id)
    received_at: float = field(default_factory=time.time)
    files: tuple[Attachment, ...] = ()
    client_context: ClientContext | None = None


@dataclass(frozen=True)
class Reply:
    """The one answer to a `Message`, addressed back to the channel and chat it came from.

    `error` is one of `ERROR_CODES` when the reply reports a failure; `text` is then a sentence
    for the person that says what to do, never exception text. `retry_after` (seconds) goes
    with `rate_limited`, `busy` and `shutting_down`. `files` are what a skill answered with;
    a channel that cannot carry them says so in the text it sends, never drops them.
    `tool_calls` are calls the model made to functions the client offered
    (`ClientContext.tools`), each `{"id", "name", "arguments"}`, for the client to run; `text`
    is then what the model said beside them, often empty.
    """

    msg_id: str
    channel: str
    chat: str
    text: str
    session: str = ""
    client_id: str | None = None
    error: str | None = None
    retry_after: float | None = None
    to: str = ""  # the sender it answers, for platforms that address replies to a person
    files: tuple[Attachment, ...] = ()
    tool_calls: tuple[dict[str, Any], ...] = ()


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


@dataclass
class ModelInput:
    """What the model was given for one message (the messages list as masked, bounded JSON)
    and the tokens it counted, so a replay can answer "why did it say that?"."""

    model: str
    given: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Trace:
    """Collects the spans of one message; the pipeline stores them when the message is done."""

    def __init__(self, msg_id: str, started: float | None = None) -> None:
        self.msg_id = msg_id
        self.started = time.perf_counter() if started is None else started
        self.spans: list[Span] = []
        self.model_input: ModelInput | None = None  # set by the chat responder
        self.answered_again = False  # a stored message answered anew: its old rows go

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
