"""One message's way through the gateway: guards -> store -> order -> session -> route ->
execute -> finish.

`Pipeline.handle` is the entry every channel calls. It is synchronous and safe to call from
many greenlets (or threads) at once: different chats run concurrently, one chat's messages are
answered in arrival order. The message is stored before anything answers it, and a retry that
carries the same client id gets the stored reply instead of a second model call (or waits for
the first call if it is still running).

It always returns a `Reply`: a refusal, a failure anywhere (the store, a skill, a bug) and a
shutdown all come back as a reply with an error code and the msg_id, never as an exception, so
every channel can always answer its sender.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace

from gateway.core.builtins import Builtins
from gateway.core.execute import Executor, Outcome
from gateway.core.message import Attachment, Message, Reply, Trace
from gateway.core.router import route
from gateway.core.settings import Settings
from gateway.core.state import Attempt, ChatOrder, InFlight, LocalChatOrder, LocalInFlight
from gateway.core.store import Store, StoredMessage
from gateway.core.turn import Turn
from gateway.guards.chain import Allow, Caller, Challenge, Verdict
from gateway.models.base import OnDelta
from gateway.observe.logs import ACCESS_LOGGER
from gateway.observe.metrics import MessageTimer, Metrics
from gateway.skills.catalog import SkillSet

log = logging.getLogger(__name__)
access = logging.getLogger(ACCESS_LOGGER)

RETRY_AFTER_RESTART = 5.0


class Pipeline:
    def __init__(self, *, store: Store, executor: Executor, settings: Settings,
                 skills: SkillSet | None = None, in_flight: InFlight | None = None,
                 order: ChatOrder | None = None, metrics: Metrics | None = None,
                 queue_timeout: float = 600.0) -> None:
        self.store = store
        self.executor = executor
        self.sessions = executor.sessions
        self.settings = settings  # swapped whole by a config reload
        self.skills = skills or SkillSet()  # swapped whole by a skills reload
        self.builtins = Builtins()  # swapped whole by the composition root (use_builtins)
        self.in_flight = in_flight or LocalInFlight()
        self.order = order or LocalChatOrder()
        self.metrics = metrics or Metrics()
        self.queue_timeout = queue_timeout
        self._active = 0
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self.draining = False

    def use_skills(self, skills: SkillSet) -> None:
        """Hot reload hands over a new snapshot; messages already routed keep the old one."""
        self.skills = skills

    def use_builtins(self, builtins: Builtins) -> None:
        """The gateway's own commands and tools for the config just applied; messages
        already admitted keep the ones they started with."""
        self.builtins = builtins

    def use_settings(self, settings: Settings) -> Settings:
        """Swap in a new settings snapshot; returns the old one (the caller retires it)."""
        old, self.settings = self.settings, settings
        return old

    def admit(self, caller: Caller) -> Verdict:
        """The guard chain, for entries that are not a message (console, handshakes)."""
        return self.settings.guards.admit(caller)

    # -- entry ---------------------------------------------------------------------------
    def handle(self, msg: Message, credential: str | None = None,
               on_delta: OnDelta | None = None,
               cancel: threading.Event | None = None,
               on_stored: Callable[[], None] | None = None) -> Reply:
        with self._lock:
            self._active += 1
            self._idle.clear()
        try:
            with self.metrics.track(msg.channel, f"{msg.channel}:{msg.chat}") as timer:
                try:
                    reply = self._handle(msg, credential, on_delta, cancel, timer, on_stored)
                except Exception:
                    log.exception("msg_id=%s failed inside the gateway", msg.id)
                    reply = _failure(msg, "internal_error", _INTERNAL.format(msg.id))
                timer.error = reply.error
                _access(msg, reply, timer)
                return reply
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._idle.set()

    def drain(self, timeout: float) -> bool:
        """Refuse new messages and wait for the ones in flight; True if all finished."""
        self.draining = True
        return self._idle.wait(timeout)

    # -- steps ---------------------------------------------------------------------------
    def _handle(self, msg: Message, credential: str | None, on_delta: OnDelta | None,
                cancel: threading.Event | None, timer: MessageTimer,
                on_stored: Callable[[], None] | None = None) -> Reply:
        if self.draining:
            timer.route = "shutting_down"
            return _failure(msg, "shutting_down", "The gateway is restarting; send the "
                            "message again in a few seconds.", RETRY_AFTER_RESTART)
        settings = self.settings  # one snapshot for the whole message
        trace = Trace(msg.id)
        with trace.step("guard") as span:
            verdict = settings.guards.admit(Caller(msg.channel, msg.peer, credential,
                                                   msg.sender, msg.text))
            if isinstance(verdict, Allow):
                span.detail = f"{','.join(verdict.passed)}: {verdict.principal}"
            else:
                span.outcome = f"{type(verdict).__name__.lower()}:{verdict.guard}"
        if not isinstance(verdict, Allow):
            timer.route = "guard"
        if isinstance(verdict, Challenge):
            return Reply(msg.id, msg.channel, msg.chat, verdict.text, client_id=msg.client_id,
                         to=msg.sender)
        if not isinstance(verdict, Allow):
            log.info("msg_id=%s refused by the %s guard: %s", msg.id, verdict.guard,
                     verdict.code)
            return _failure(msg, verdict.code, verdict.message, verdict.retry_after)
        # a message that names no sender is the principal's own (a script with a token)
        sender = msg.sender or verdict.principal
        msg = replace(msg, principal=verdict.principal, sender=sender, chat=msg.chat or sender)
        # the skills snapshot is read once too, even if a reload swaps it mid-message
        turn = Turn(msg, trace, settings, self.skills, on_delta, cancel, self.builtins)
        if not msg.client_id:
            return self._store_and_answer(turn, None, timer, on_stored)
        # a client's id is its own: tied to the credential that proved it (two tokens of one
        # name are two clients) and to the sender (a platform speaks for many people)
        key = f"{msg.channel}:{msg.principal}#{verdict.credential}:{msg.sender}:{msg.client_id}"
        attempt, mine = self.in_flight.claim(key)
        if not mine:
            timer.route = "retry"
            return self._await_earlier(msg, attempt)
        try:
            attempt.reply = self._store_and_answer(turn, key, timer, on_stored)
            return attempt.reply
        finally:
            self.in_flight.release(key, attempt)

    def _await_earlier(self, msg: Message, earlier: Attempt) -> Reply:
        log.info("msg_id=%s retry of a message still being answered; waiting", msg.id)
        earlier.done.wait(self.queue_timeout)
        if earlier.reply is None:
            return _failure(msg, "internal_error", "The first attempt of this message did "
                            "not finish; send it again.")
        return replace(earlier.reply, client_id=msg.client_id)

    def _store_and_answer(self, turn: Turn, key: str | None, timer: MessageTimer,
                          on_stored: Callable[[], None] | None = None) -> Reply:
        msg, trace = turn.msg, turn.trace
        with trace.step("store") as span:
            seen = self.store.add_message(msg, key)
            if seen:
                span.detail = f"retry of {seen.id} ({seen.status})"
        if on_stored is not None:  # the channel may now confirm the message to its platform
            on_stored()
        if seen and seen.status == "answered":
            timer.route = "retry"
            log.info("msg_id=%s retry answered from the store", seen.id)
            return _stored_reply(msg, seen, self.store.files_of(seen.id, "out"))
        if seen:  # stored earlier but never answered (crash, failure): answer it now
            msg = turn.msg = replace(msg, id=seen.id)
            trace.msg_id = seen.id
            trace.answered_again = True
        # From here on the message is stored: whatever happens, it is finished with a reply.
        try:
            waiting_since = time.perf_counter()
            with self._in_order(msg):
                trace.add("queue", waiting_since, "ok", "waited for earlier messages of the chat"
                          if msg.client_context is None else "not queued: the client keeps "
                          "the conversation")
                outcome = self._answer(turn)
        except TimeoutError:
            timer.route = "queue"
            return self._finish(turn, None, "queue", _failure(
                msg, "busy", "Earlier messages of this chat are still being answered; "
                "try again shortly.", 5.0))
        except Exception:
            log.exception("msg_id=%s failed inside the gateway", msg.id)
            return self._finish(turn, None, "error", _failure(
                msg, "internal_error", _INTERNAL.format(msg.id)))
        timer.route = outcome.route.kind
        timer.model = turn.model if outcome.route.kind == "chat" else None
        reply = Reply(msg.id, msg.channel, msg.chat, outcome.text, outcome.session.id,
                      msg.client_id, outcome.error, to=msg.sender, files=outcome.files,
                      tool_calls=outcome.tool_calls)
        return self._finish(turn, outcome, outcome.route.label, reply)

    def _in_order(self, msg: Message) -> AbstractContextManager[object]:
        """The chat's turn: its messages are answered one at a time, in arrival order. A client
        that sends its own conversation (`ClientContext`) orders it itself, and its requests
        that arrive together come from separate conversations (the users of one Open WebUI
        behind one token, a title asked beside a chat): they are not queued behind each
        other."""
        if msg.client_context is not None:
            return nullcontext()
        return self.order.turn(f"{msg.channel}:{msg.chat}", self.queue_timeout)

    def _answer(self, turn: Turn) -> Outcome:
        msg, trace = turn.msg, turn.trace
        with trace.step("session") as span:
            session = self.sessions.open(msg.channel, msg.chat, turn.settings.sessions)
            span.detail = f"{session.id}{' (new)' if session.fresh else ''}"
        with trace.step("route") as span:
            chosen = route(msg.text, turn.skills, turn.builtins.commands)
            span.detail = f"{chosen.label} ({chosen.reason})"
        outcome = self.executor.run(turn, chosen, session)
        if outcome.is_conversation:
            self.sessions.remember_turn(outcome.session.id, msg.text, outcome.text,
                                        turn.settings.sessions)
        return outcome

    def _finish(self, turn: Turn, outcome: Outcome | None, route_name: str,
                reply: Reply) -> Reply:
        msg, trace = turn.msg, turn.trace
        self.store.finish_message(msg.id, session_id=outcome.session.id if outcome else None,
                                  reply=reply.text, error=reply.error, route=route_name,
                                  trace=trace.spans, model_input=trace.model_input,
                                  channel=msg.channel, again=trace.answered_again,
                                  reply_files=reply.files)
        # every message has its access.log line already: this one only at `logs.level: debug`
        log.debug("msg_id=%s answered via %s%s", msg.id, route_name,
                  f" with error {reply.error}" if reply.error else "")
        return reply


def _access(msg: Message, reply: Reply, timer: MessageTimer) -> None:
    """One access-log line per message, in and out (ECS names; the text stays in the store)."""
    access.info("message %s %s", reply.msg_id, reply.error or "ok", extra={"ecs": {
        "event.action": "message", "event.outcome": "failure" if reply.error else "success",
        "event.duration": int((time.perf_counter() - timer.began) * 1e9),
        "source.address": msg.peer, "user.name": msg.principal or msg.sender,
        "moltbot.msg_id": reply.msg_id, "moltbot.channel": msg.channel,
        "moltbot.chat": msg.chat, "moltbot.route": timer.route,
        "moltbot.error": reply.error, "moltbot.session": reply.session}})


_INTERNAL = ("Something went wrong answering this message (msg_id {}); the details are in "
             "data/logs/error.log.")


def _failure(msg: Message, code: str, text: str, retry_after: float | None = None) -> Reply:
    return Reply(msg.id, msg.channel, msg.chat, text, client_id=msg.client_id, error=code,
                 retry_after=retry_after, to=msg.sender)


def _stored_reply(msg: Message, seen: StoredMessage, files: tuple[Attachment, ...]) -> Reply:
    return Reply(seen.id, msg.channel, msg.chat, seen.reply or "", seen.session_id or "",
                 msg.client_id, to=msg.sender, files=files)
