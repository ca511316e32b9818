"""The outbox: every message the gateway sends on a push channel is stored, then sent.

What goes in: a reply that leaves after its request (enterprise_im with `reply_url`: a row
is stored *waiting* when the platform gets its 202, and filled in with the reply's text when
the message is answered), and the messages the gateway starts (`context.send` in a skill,
`POST /api/v1/send`; checked first: a known push channel, a chat it has answered, the
per-chat limit `outbox.per_chat`).

What comes out: one sender per push channel (a greenlet in the gateway) takes the due rows in
order (one chat's rows in the order they were stored; other chats are not held up by one
that waits) and calls the channel's `deliver`. A row is marked `sent`, or tried again after a
backoff (1 s doubling to 5 min, with jitter; the platform's Retry-After instead when it gave
one, and then the whole channel waits that long), or marked `failed` with the reason (a
refusal, or `outbox.max_attempts` used up). Each attempt is in the row's history, which the
message's trace, the console and `moltbot trace` show; `/metrics` counts sent, retried and
failed per channel. A sender sleeps on an event until a row is due or a new one arrives: no
polling; while its channel cannot send (`push_problem()`) it holds the rows until woken.

Crashes: rows are in SQLite before anything is sent. At start, rows a stopped gateway left
`sending` go out again (at least once: the outbound id is the platform's idempotency key, so
it can drop the duplicate), `waiting` rows whose message was answered are filled from the
stored reply, and those whose message never was are marked failed (the platform's retry of
the same id answers it and sends the reply). On a graceful stop each sender sends what is due
until its deadline; what waits for a backoff goes after the next start.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from limits.strategies import MovingWindowRateLimiter

from gateway.core.fields import MAX_FIELD, MAX_TEXT, storable
from gateway.core.message import Attachment, Message, Reply
from gateway.core.outbound import (
    DeliveryRefused,
    Origin,
    Outbound,
    PushTarget,
    RetryLater,
    SendRefused,
    new_outbound_id,
)
from gateway.core.outbox_store import OutboxStore
from gateway.core.skill_files import ReplyFileRefused, reply_files
from gateway.core.store import Store
from gateway.guards.rate_limit import parse_rate
from gateway.observe.metrics import Metrics

if TYPE_CHECKING:
    from gateway.config import OutboxConfig

log = logging.getLogger(__name__)

FIRST_DELAY = 1.0  # seconds before the second attempt; doubling from there
MAX_DELAY = 300.0
STORE_TROUBLE_WAIT = 5.0  # a sender whose store call failed looks again after this
NOT_ANSWERED = ("the gateway stopped before the message was answered; the platform's retry "
                "of the same id answers it and sends the reply")


class Outbox:
    def __init__(self, store: Store, channels: Callable[[], Mapping[str, object]], *,
                 workspace: Path, metrics: Metrics,
                 limiter: Callable[[], MovingWindowRateLimiter],
                 policy: Callable[[], OutboxConfig], clock: Callable[[], float] = time.time,
                 delays: tuple[float, float] = (FIRST_DELAY, MAX_DELAY)) -> None:
        self.store = store
        self.rows = OutboxStore(store)
        self.channels = channels  # every channel by name; the push ones are PushTargets
        self.workspace = workspace
        self.metrics = metrics
        self.limiter = limiter  # these two are read at each use: a reload applies at once
        self.policy = policy
        self.clock = clock
        self.first_delay, self.max_delay = delays
        self.senders: dict[str, Sender] = {}

    # -- life ----------------------------------------------------------------------------
    def recover(self) -> None:
        """Pick up what a stopped gateway left: rows cut off while sending go out again,
        waiting replies are filled from the stored answer (or marked failed)."""
        now = self.clock()
        again = self.rows.requeue_interrupted(now)
        if again:
            log.warning("outbox: %d message(s) were being sent when the gateway stopped; "
                        "they are sent again (same outbound id)", again)
        for row in self.rows.with_state("waiting"):
            stored = self.store.get_message(row.msg_id) if row.msg_id else None
            if stored is None or stored.status == "received":
                self.rows.mark_failed(row.id, now, NOT_ANSWERED)
                log.warning("msg_id=%s outbound %s failed: %s", row.msg_id, row.id,
                            NOT_ANSWERED)
                continue
            self.rows.fill_reply(row.id, msg_id=stored.id, text=stored.reply or "",
                                 to=row.to, reply_to=row.reply_to, now=now,
                                 files=_listed(self.store.files_of(stored.id, "out")))

    def start(self, send: bool = True) -> None:
        """Recover, then one sender per push channel (none with `send` False: a test fault
        that holds the outbox still)."""
        self.recover()
        if not send:
            log.warning("outbox: held by a test fault; nothing is sent")
            return
        for name, channel in self.channels().items():
            if isinstance(channel, PushTarget) and name not in self.senders:
                self.senders[name] = Sender(self, channel)
                self.senders[name].start()

    def wake(self, channel: str | None = None) -> None:
        """Look at the rows again now (a new row, a reload that switched a channel on)."""
        for name, sender in self.senders.items():
            if channel is None or name == channel:
                sender.wakeup.set()

    def stop(self, timeout: float) -> bool:
        """Send what is due until `timeout`, then stop; True if every sender ended."""
        deadline = time.monotonic() + timeout
        for sender in self.senders.values():
            sender.close(deadline)
        for sender in self.senders.values():
            sender.thread.join(max(0.0, deadline - time.monotonic()))
        return not any(s.thread.is_alive() for s in self.senders.values())

    # -- replies sent after their request ------------------------------------------------
    def expect_reply(self, msg: Message) -> str:
        """A row for the reply `msg` will get, stored before the platform gets its 202."""
        row = Outbound(id=new_outbound_id(), channel=msg.channel, chat=msg.chat, text="",
                       to=msg.sender, msg_id=msg.id, reply_to=msg.client_id,
                       origin="reply", state="waiting", created_at=self.clock())
        self.rows.insert(row)
        return row.id

    def reply_ready(self, outbound_id: str, reply: Reply) -> Outbound | None:
        """The reply is there: queue it (nothing to send, e.g. a blocked sender: no row)."""
        text = "" if reply.error == "blocked" else reply.text
        row = self.rows.fill_reply(outbound_id, msg_id=reply.msg_id, text=text,
                                   to=reply.to, reply_to=reply.client_id, now=self.clock(),
                                   files=_listed(reply.files))
        if row is not None:
            self.wake(row.channel)
        return row

    def reply_lost(self, outbound_id: str, why: str) -> None:
        """The reply will never come (a bug answering it): say so on the row."""
        self.rows.mark_failed(outbound_id, self.clock(), why)

    # -- messages the gateway starts -----------------------------------------------------
    def send(self, channel: Any, chat: Any, text: Any, *, to: Any = "",
             files: Any = (), msg_id: str | None = None, origin: Origin = "api") -> Outbound:
        """Store a message for `chat` on push channel `channel` and wake its sender.

        Raises `SendRefused` saying what to fix: an unknown channel, one that cannot send,
        an unknown chat, bad fields, or the chat's limit (`outbox.per_chat`) reached.
        """
        target = self._push_channel(channel)
        chat = _field("chat", chat, required=True)
        to = _field("to", to or "")
        if not isinstance(text, str) or len(text) > MAX_TEXT or not storable(text):
            raise SendRefused("bad_request", f'"text" must be a string of at most {MAX_TEXT} '
                              "characters of valid Unicode.")
        attached = self._files(files)
        if not text.strip() and not attached:
            raise SendRefused("bad_request", '"text" must not be empty (or attach files).')
        if not target.knows_chat(chat):
            raise SendRefused("bad_request", f"{target.name} has no chat {chat!r}: the "
                              f"gateway sends only to chats it has answered on "
                              f"{target.name}; check the chat id (a message's `chat`).")
        self._spend(target.name, chat)
        now = self.clock()
        row = Outbound(id=new_outbound_id(), channel=target.name, chat=chat, text=text, to=to,
                       files=attached, msg_id=msg_id, origin=origin, state="queued",
                       next_try_at=now, created_at=now)
        self.rows.insert(row)
        self.wake(target.name)
        log.info("msg_id=%s outbound %s for %s/%s stored (%s)", msg_id or "-", row.id,
                 target.name, chat, origin)
        return row

    def retry(self, outbound_id: str) -> Outbound | None:
        """Queue a failed row again (the console's Retry); None if it is not failed."""
        row = self.rows.retry(outbound_id, self.clock())
        if row is not None:
            self.wake(row.channel)
        return row

    def for_skill(self, request: dict[str, Any], msg: dict[str, Any]) -> dict[str, Any]:
        """`context.send(...)` from a skill host, on behalf of the message `msg` it runs."""
        if request.get("op") != "send":
            return {"error": f"the gateway has no {request.get('op')!r}", "code": "bad_request"}
        try:
            row = self.send(request.get("channel"), request.get("chat"), request.get("text"),
                            to=request.get("to") or "", files=request.get("files") or (),
                            msg_id=str(msg.get("id") or "") or None, origin="skill")
        except SendRefused as e:
            return {"error": str(e), "code": e.code}
        return {"id": row.id, "state": row.state}

    def _push_channel(self, name: Any) -> PushTarget:
        channels = self.channels()
        pushers = sorted(n for n, c in channels.items() if isinstance(c, PushTarget))
        can = f"channels that can send: {', '.join(pushers) or 'none'}"
        if not isinstance(name, str) or name not in channels:
            raise SendRefused("bad_request", f"There is no channel {name!r}; {can}.")
        target = channels[name]
        if not isinstance(target, PushTarget):
            raise SendRefused("bad_request", f"The {name} channel answers only the request "
                              f"that asked; it cannot send on its own ({can}).")
        problem = target.push_problem()
        if problem:
            raise SendRefused("unavailable", problem)
        return target

    def _files(self, paths: Any) -> tuple[dict[str, Any], ...]:
        """Workspace files to send along, by the rule of a skill's answer's files (a regular
        file inside the workspace, never data/, config.yaml or a hidden file)."""
        try:
            return _listed(reply_files(paths, self.workspace))
        except ReplyFileRefused as e:
            log.warning("a file to send was refused: %s (%s)", e, e.detail)
            raise SendRefused("bad_request", f"A file cannot be sent: {e}.") from e

    def _spend(self, channel: str, chat: str) -> None:
        """One message of the chat's budget (`outbox.per_chat`), or `rate_limited`."""
        rate = self.policy().per_chat
        item = parse_rate(rate)
        key = f"{channel}:{chat}"
        limiter = self.limiter()
        if limiter.hit(item, "outbox", key):
            return
        reset = limiter.get_window_stats(item, "outbox", key).reset_time
        wait = max(1.0, round(reset - time.time()))
        raise SendRefused("rate_limited", f"Too many messages for {key}: the limit is {rate} "
                          f"(outbox.per_chat). Try again in {wait:.0f} s.", wait)

    # -- delivery ------------------------------------------------------------------------
    def delay(self, attempts: int) -> float:
        """Backoff after `attempts` failed tries: doubling, capped, with jitter."""
        ceiling = min(self.max_delay, self.first_delay * 2 ** max(0, attempts - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class Sender:
    """One push channel's sender: a greenlet that sends its due rows, one at a time."""

    def __init__(self, outbox: Outbox, channel: PushTarget) -> None:
        self.outbox = outbox
        self.channel = channel
        self.wakeup = threading.Event()
        self.paused_until = 0.0  # the platform's Retry-After holds the whole channel
        self.deadline: float | None = None  # set by close(): send what is due until then
        self.thread = threading.Thread(target=self._run, name=f"outbox-{channel.name}",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self, deadline: float) -> None:
        self.deadline = deadline
        self.wakeup.set()

    def _run(self) -> None:
        while True:
            self.wakeup.clear()
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return
            try:
                wait = self.step()
            except Exception:  # the store failed: say so, look again later
                log.exception("outbox: the %s sender failed; it looks again in %.0f s",
                              self.channel.name, STORE_TROUBLE_WAIT)
                wait = STORE_TROUBLE_WAIT
            if wait == 0:
                continue
            if self.deadline is not None:  # closing and nothing is due now
                return
            self.wakeup.wait(wait)

    def step(self) -> float | None:
        """Send the next due row. Returns 0 after sending one (look again at once), else how
        long until one is due (None: nothing waits; sleep until woken)."""
        now = self.outbox.clock()
        if now < self.paused_until:
            return self.paused_until - now
        if self.channel.push_problem():
            return None  # rows wait; a reload that switches the channel on wakes us
        row, when = self.outbox.rows.claim_next(self.channel.name, now)
        if row is None:
            return None if when is None else max(0.01, when - now)
        self._deliver(row)
        return 0.0

    def _deliver(self, row: Outbound) -> None:
        outbox, name = self.outbox, self.channel.name
        where = f"msg_id={row.msg_id or '-'} outbound {row.id} to {name}/{row.chat}"
        try:
            self.channel.deliver(row)
        except DeliveryRefused as e:
            self._failed(row, where, f"refused: {e}")
        except RetryLater as e:
            self._retry(row, where, str(e), e.retry_after)
        except Exception as e:  # a bug in the channel: logged whole, tried again like a 5xx
            log.exception("%s: the channel failed to deliver", where)
            self._retry(row, where, f"{type(e).__name__} in the {name} channel", None)
        else:
            now = outbox.clock()
            outbox.rows.mark_sent(row.id, now, f"attempt {row.attempts}")
            outbox.metrics.outbound(name, "sent")
            log.info("%s sent (attempt %d)", where, row.attempts)

    def _retry(self, row: Outbound, where: str, why: str, retry_after: float | None) -> None:
        outbox = self.outbox
        if retry_after is not None:
            why = f"{why} (retry after {retry_after:g} s)"
        limit = outbox.policy().max_attempts
        if row.attempts >= limit:
            self._failed(row, where, f"gave up after {row.attempts} attempts "
                         f"(outbox.max_attempts): {why}")
            return
        now = outbox.clock()
        if retry_after is not None:
            wait = max(0.0, retry_after)
            self.paused_until = now + wait
        else:
            wait = outbox.delay(row.attempts)
        outbox.rows.mark_retry(row.id, now, why, now + wait)
        outbox.metrics.outbound(self.channel.name, "retried")
        log.warning("%s: attempt %d of %d failed (%s); next in %.1f s", where, row.attempts,
                    limit, why, wait)

    def _failed(self, row: Outbound, where: str, why: str) -> None:
        self.outbox.rows.mark_failed(row.id, self.outbox.clock(), why)
        self.outbox.metrics.outbound(self.channel.name, "failed")
        log.error("%s failed: %s", where, why)


def _field(name: str, value: Any, required: bool = False) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > MAX_FIELD or not storable(value) \
            or (required and not value.strip()):
        raise SendRefused("bad_request", f'"{name}" must be a{" non-empty" if required else ""}'
                          f" string of at most {MAX_FIELD} characters.")
    return value


def _listed(files: Sequence[Attachment]) -> tuple[dict[str, Any], ...]:
    """Attachments as an outbound row keeps them: {name, path, media_type, size, sha256, id}."""
    return tuple(asdict(f) for f in files)


def outbound_lines(rows: Sequence[Outbound]) -> list[str]:
    """The deliveries of a message as lines for `moltbot trace`."""
    lines = []
    for row in rows:
        lines.append(f"  outbound {row.id} ({row.origin}) to {row.channel}/{row.chat}: "
                     f"{row.state}, {row.attempts} attempt(s)"
                     + (f", last error: {row.last_error}" if row.last_error else ""))
        lines += [f"    {time.strftime('%H:%M:%S', time.gmtime(h['at']))} UTC  "
                  f"{h['outcome']:<11} {h['detail']}" for h in row.history]
    return lines
