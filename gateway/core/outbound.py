"""What the gateway sends on a push channel: one `Outbound` row, and how a delivery fails.

Every message that leaves on a push channel after its request (a reply sent later, a message
a skill or a script starts) is an outbound row, stored before it is sent (`core.outbox`).
A push channel's `deliver(outbound)` returns normally when the platform took it, raises
`RetryLater` when it may take it later (HTTP 429 and 5xx, a network error: with the platform's
Retry-After when it gave one) and `DeliveryRefused` when it never will (other 4xx).

Like `core.message`, this module imports nothing else of ours, so channels and the outbox
can both depend on it. `PushTarget` is what the outbox needs of a channel: the channels sit
above the core and fulfil it (`channels.base.PushChannel`).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

State = Literal["waiting", "queued", "sending", "sent", "failed"]
Origin = Literal["reply", "skill", "api", "reminder", "schedule"]

# waiting: a reply whose text is not ready yet (its message is being answered);
# queued: due at `next_try_at`; sending: handed to the channel; sent, failed: done.
STATES: tuple[State, ...] = ("waiting", "queued", "sending", "sent", "failed")


def new_outbound_id() -> str:
    """Sortable and unguessable, like a msg_id; the platform's idempotency key."""
    return f"o{int(time.time() * 1000):x}{secrets.token_hex(5)}"


@dataclass(frozen=True)
class Outbound:
    """One message the gateway sends on a push channel.

    `msg_id` is the gateway message it belongs to: the one it answers (`origin` "reply") or
    the one whose skill sent it ("skill"); None for a script's `POST /api/v1/send` ("api"),
    a reminder ("reminder") and a skill's scheduled run ("schedule").
    `reply_to` is the platform's own id of the message a reply answers. `files` are
    `{name, path, media_type, size}` (paths relative to the workspace). `history` holds one
    entry per attempt: `{at, outcome, detail}`.
    """

    id: str
    channel: str
    chat: str
    text: str
    to: str = ""
    files: tuple[dict[str, Any], ...] = ()
    msg_id: str | None = None
    reply_to: str | None = None
    origin: Origin = "reply"
    state: State = "queued"
    attempts: int = 0
    next_try_at: float = 0.0
    last_error: str = ""
    created_at: float = field(default_factory=time.time)
    sent_at: float | None = None
    history: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """For the APIs and `moltbot trace --json`."""
        return {"id": self.id, "channel": self.channel, "chat": self.chat, "to": self.to,
                "text": self.text, "files": list(self.files), "msg_id": self.msg_id,
                "reply_to": self.reply_to, "origin": self.origin, "state": self.state,
                "attempts": self.attempts, "next_try_at": self.next_try_at,
                "last_error": self.last_error, "created_at": self.created_at,
                "sent_at": self.sent_at, "history": list(self.history)}


@runtime_checkable
class PushTarget(Protocol):
    """A channel that sends on its own connection, as the outbox sees it."""

    name: str

    def deliver(self, outbound: Outbound) -> None:
        """Return when the platform took it; raise `RetryLater` or `DeliveryRefused`."""
        ...

    def push_problem(self) -> str | None:
        """Why it cannot send now (switched off, not configured), or None."""
        ...

    def knows_chat(self, chat: str) -> bool:
        """Whether the gateway may start a message in `chat`."""
        ...


class RetryLater(Exception):
    """The platform may take it later: `str(e)` says why (no secrets, no URL query);
    `retry_after` is the platform's own wait in seconds, when it gave one."""

    def __init__(self, why: str, retry_after: float | None = None) -> None:
        super().__init__(why)
        self.retry_after = retry_after


class DeliveryRefused(Exception):
    """The platform will never take it (a 4xx other than 429); `str(e)` says why."""


class SendRefused(Exception):
    """A message the gateway was asked to start cannot go: `str(e)` says what to fix.

    `code` is one of `core.message.ERROR_CODES` (`bad_request`, `rate_limited`,
    `unavailable`); `retry_after` goes with `rate_limited`.
    """

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


MAX_RETRY_AFTER = 3600.0  # a platform asking for longer is believed for an hour


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """An HTTP Retry-After header (seconds, or a date) as seconds from now, or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return min(max(0.0, when - (time.time() if now is None else now)), MAX_RETRY_AFTER)
