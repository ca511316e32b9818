"""One message's way through the gateway: guards -> store -> session -> router -> model -> reply.

`Pipeline.handle` is the single `submit` callable every channel is given. It is synchronous and
safe to call from many greenlets (or threads) at once: different chats run concurrently, one
chat's messages are answered in arrival order. The message is stored before anything answers
it, and a retry that carries the same client id gets the stored reply instead of a second model
call (or waits for the first call if it is still running).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace

from gateway.chat import ChatResponder
from gateway.guards.chain import GuardChain
from gateway.message import Message, Reply, Trace
from gateway.models.base import OnDelta
from gateway.models.pool import ModelPool
from gateway.router import Route, help_text, route
from gateway.sessions import ChatQueue, Session, SessionManager
from gateway.skills.catalog import SkillSet
from gateway.skills.errors import SkillError
from gateway.skills.handlers import SkillHandler
from gateway.store import Store, StoredMessage

log = logging.getLogger(__name__)


@dataclass
class _InFlight:
    done: threading.Event
    reply: Reply | None = None


class Pipeline:
    def __init__(self, *, store: Store, sessions: SessionManager, guards: GuardChain,
                 models: dict[str, ModelPool], chat_model: str | None, chat: ChatResponder,
                 skills: SkillSet | None = None, queue_timeout: float = 600.0) -> None:
        self.store = store
        self.sessions = sessions
        self.guards = guards
        self.models = models
        self.chat_model = chat_model
        self.chat = chat
        self.queue_timeout = queue_timeout
        self.skills = skills or SkillSet()  # swapped whole by hot reload
        self.queue = ChatQueue()
        self._inflight: dict[str, _InFlight] = {}
        self._lock = threading.Lock()
        self._active = 0
        self._idle = threading.Event()
        self._idle.set()
        self.draining = False

    def use_skills(self, skills: SkillSet) -> None:
        """Hot reload hands over a new snapshot; messages already routed keep the old one."""
        self.skills = skills

    # -- entry ---------------------------------------------------------------------------
    def handle(self, msg: Message, on_delta: OnDelta | None = None,
               cancel: threading.Event | None = None) -> Reply:
        if self.draining:
            return _error_reply(msg, "shutting_down", "The gateway is restarting; send the "
                                "message again in a few seconds.", 503)
        trace = Trace(msg.id)
        with trace.step("guard") as span:
            span.detail, refusal = self.guards.check(msg)
            if refusal:
                span.outcome = f"refused:{refusal.code}"
        if refusal:
            log.info("msg_id=%s refused by guard: %s", msg.id, refusal.code)
            return _error_reply(msg, refusal.code, refusal.message, refusal.status)

        key = f"{msg.channel}:{msg.principal}:{msg.client_id}" if msg.client_id else None
        with self._lock:
            earlier = self._inflight.get(key) if key else None
            mine = None if earlier else _InFlight(threading.Event())
            if key and mine:
                self._inflight[key] = mine
            self._active += 1
            self._idle.clear()
        try:
            if earlier:
                return self._await_earlier(msg, earlier)
            reply = self._handle_new(msg, key, trace, on_delta, cancel)
            if mine:
                mine.reply = reply
            return reply
        finally:
            with self._lock:
                if key and mine:
                    self._inflight.pop(key, None)
                self._active -= 1
                if self._active == 0:
                    self._idle.set()
            if mine:
                mine.done.set()

    def drain(self, timeout: float) -> bool:
        """Refuse new messages and wait for the ones in flight; True if all finished."""
        self.draining = True
        return self._idle.wait(timeout)

    # -- steps ---------------------------------------------------------------------------
    def _await_earlier(self, msg: Message, earlier: _InFlight) -> Reply:
        log.info("msg_id=%s retry of a message still being answered; waiting", msg.id)
        earlier.done.wait(self.queue_timeout)
        if earlier.reply is None:
            return _error_reply(msg, "internal_error", "The first attempt of this message did "
                                "not finish; send it again.", 500)
        return replace(earlier.reply, client_id=msg.client_id)

    def _handle_new(self, msg: Message, key: str | None, trace: Trace,
                    on_delta: OnDelta | None, cancel: threading.Event | None) -> Reply:
        with trace.step("store") as span:
            seen = self.store.add_message(msg, key)
            if seen:
                span.detail = f"retry of {seen.id} ({seen.status})"
        if seen and seen.status == "answered":
            log.info("msg_id=%s retry answered from the store", seen.id)
            return _stored_reply(msg, seen)
        if seen:  # stored earlier but never answered (crash, failure): answer it now
            msg = replace(msg, id=seen.id)
            trace.msg_id = seen.id
        try:
            waiting_since = time.perf_counter()
            with self.queue.turn(f"{msg.channel}:{msg.chat}", self.queue_timeout):
                trace.add("queue", waiting_since, "ok", "waited for earlier messages of the chat")
                return self._answer(msg, trace, on_delta, cancel)
        except TimeoutError:
            return self._finish(msg, trace, None, "queue", _error_reply(
                msg, "busy", "Earlier messages of this chat are still being answered; "
                "try again shortly.", 503))
        except Exception:
            log.exception("msg_id=%s failed inside the gateway", msg.id)
            return self._finish(msg, trace, None, "error", _error_reply(
                msg, "internal_error", f"Something went wrong answering this message "
                f"(msg_id {msg.id}); the details are in data/logs/error.log.", 500))

    def _answer(self, msg: Message, trace: Trace, on_delta: OnDelta | None,
                cancel: threading.Event | None) -> Reply:
        with trace.step("session") as span:
            session = self.sessions.open(msg.channel, msg.chat)
            span.detail = f"{session.id}{' (new)' if session.fresh else ''}"
        skills = self.skills  # one snapshot for the whole message, even if a reload swaps it
        with trace.step("route") as span:
            chosen = route(msg.text, skills)
            span.detail = f"{chosen.kind}:{chosen.name} ({chosen.reason})"
        if chosen.kind == "command":
            reply, session = self._command(msg, chosen, session, skills)
        elif chosen.handler is not None:
            reply = self._skill(msg, chosen.handler, chosen.args, session, trace)
        else:
            reply = self._chat(msg, session, trace, on_delta, cancel, skills)
        route_name = f"{chosen.kind}:{chosen.name}"
        if chosen.kind != "command" and not reply.error:
            self.sessions.remember_turn(session.id, msg.text, reply.text)
        return self._finish(msg, trace, session, route_name, reply)

    def _command(self, msg: Message, chosen: Route, session: Session,
                 skills: SkillSet) -> tuple[Reply, Session]:
        if chosen.name in ("reset", "new"):
            session = self.sessions.reset(msg.channel, msg.chat)
            return _reply(msg, "Started a fresh conversation.", session.id), session
        return _reply(msg, help_text(skills), session.id), session

    def _skill(self, msg: Message, handler: SkillHandler, text: str, session: Session,
               trace: Trace) -> Reply:
        payload = {"text": text, "id": msg.id, "sender": msg.sender, "chat": msg.chat,
                   "channel": msg.channel, "session": session.id}
        with trace.step("skill") as span:
            span.detail = f"{handler.intent} ({handler.source})"
            begin = time.perf_counter()
            try:
                result = handler.call(payload)
            except SkillError as e:
                span.outcome = "error"
                span.detail += f": {e}"
                log.warning("msg_id=%s %s", msg.id, e)
                return _error_reply(msg, "skill_error", f"{e} (msg_id {msg.id})", 500,
                                    session.id)
        for inner in result.spans:  # tool and model calls the skill made, on one timeline
            trace.add_at(inner["step"], begin + inner["start_ms"] / 1000,
                         inner["duration_ms"], inner["outcome"], inner.get("detail", ""))
        return _reply(msg, result.text, session.id)

    def _chat(self, msg: Message, session: Session, trace: Trace, on_delta: OnDelta | None,
              cancel: threading.Event | None, skills: SkillSet) -> Reply:
        pool = self.models.get(self.chat_model or "")
        if pool is None:
            return _error_reply(msg, "model_unavailable", "No model is configured: add one "
                                "under models: in config.yaml (see the README).", 503,
                                session.id)
        outcome = self.chat.answer(pool, msg.id, msg.text, session.id, trace, skills,
                                   on_delta, cancel)
        if outcome.error:
            code, text, status = outcome.error
            return _error_reply(msg, code, text, status, session.id)
        if outcome.skill:  # the model chose a skill
            handler, text = outcome.skill
            return self._skill(msg, handler, text, session, trace)
        return _reply(msg, outcome.text, session.id)

    def _finish(self, msg: Message, trace: Trace, session: Session | None, route_name: str,
                reply: Reply) -> Reply:
        self.store.finish_message(msg.id, session_id=session.id if session else None,
                                  reply=reply.text, error=reply.error, route=route_name,
                                  trace=trace.spans)
        log.info("msg_id=%s answered via %s%s", msg.id, route_name,
                 f" with error {reply.error}" if reply.error else "")
        return reply


def _reply(msg: Message, text: str, session_id: str) -> Reply:
    return Reply(msg.id, msg.channel, msg.chat, text, session_id, msg.client_id)


def _error_reply(msg: Message, code: str, text: str, status: int,
                 session_id: str = "") -> Reply:
    return Reply(msg.id, msg.channel, msg.chat, text, session_id, msg.client_id,
                 error=code, status=status)


def _stored_reply(msg: Message, seen: StoredMessage) -> Reply:
    return Reply(seen.id, msg.channel, msg.chat, seen.reply or "", seen.session_id or "",
                 msg.client_id)

