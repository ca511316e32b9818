"""Carry out a route: a command, a skill, or chat with the model (which may pick a skill).

The one place that runs what the router (or the model) chose. When the model picks a skill,
the route becomes that skill's (`router.chosen_by_model`) and runs here like any other, so the
trace and the stored route name what really answered: `skill:faq_query (chosen by the model)`,
not `chat:model`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.core.builtins import CommandError
from gateway.core.chat import ChatResponder
from gateway.core.message import Attachment
from gateway.core.router import Route, chosen_by_model, help_text
from gateway.core.sessions import Session, SessionManager
from gateway.core.skill_files import ReplyFileRefused, for_skill, reply_files
from gateway.core.turn import Turn
from gateway.observe.redact import redact
from gateway.skills.errors import SkillError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What answered and how: `route` is the final one (a skill the model chose, not chat)."""

    route: Route
    session: Session
    text: str
    error: str | None = None  # a code of gateway.core.message.ERROR_CODES
    files: tuple[Attachment, ...] = ()  # what a skill answered with
    tool_calls: tuple[dict[str, Any], ...] = ()  # the client's functions the model called

    @property
    def is_conversation(self) -> bool:
        """Commands are not conversation; failures are not remembered as turns."""
        return self.route.kind != "command" and self.error is None


class Executor:
    def __init__(self, sessions: SessionManager, chat: ChatResponder,
                 workspace: Path | None = None) -> None:
        self.sessions = sessions
        self.chat = chat
        self.workspace = workspace or Path.cwd()  # where sent and answered files are

    def run(self, turn: Turn, chosen: Route, session: Session) -> Outcome:
        if chosen.kind == "command":
            return self._command(turn, chosen, session)
        if chosen.kind == "skill" and chosen.handler is not None:
            return self._skill(turn, chosen, session)
        pool = turn.settings.models.get(turn.model or "")
        if pool is None:
            return Outcome(chosen, session, "No model is configured: add one under models: "
                           "in config.yaml (see the README).", "model_unavailable")
        answer = self.chat.answer(turn, pool, chosen.args, session.id)
        if answer.skill:
            handler, text = answer.skill
            picked = chosen_by_model(handler, text)
            with turn.trace.step("route") as span:
                span.detail = f"{picked.label} ({picked.reason})"
            return self._skill(turn, picked, session)
        if answer.error:
            code, sentence = answer.error
            return Outcome(chosen, session, sentence, code)
        return Outcome(chosen, session, answer.text, tool_calls=answer.tool_calls)

    def _command(self, turn: Turn, chosen: Route, session: Session) -> Outcome:
        msg, builtins = turn.msg, turn.builtins.commands
        if chosen.name in ("reset", "new"):
            fresh = self.sessions.reset(msg.channel, msg.chat)
            return Outcome(chosen, fresh, "Started a fresh conversation.")
        command = builtins.get(chosen.name)
        if command is not None:
            try:
                return Outcome(chosen, session, command.run(msg, chosen.args, turn.settings))
            except CommandError as e:  # used wrongly: the answer says how to use it
                return Outcome(chosen, session, str(e))
        unknown = chosen.args if chosen.name == "unknown" else ""
        return Outcome(chosen, session, help_text(
            turn.skills, unknown, {word: c.summary for word, c in builtins.items()}))

    def _skill(self, turn: Turn, chosen: Route, session: Session) -> Outcome:
        msg, trace = turn.msg, turn.trace
        handler = chosen.handler
        assert handler is not None
        payload = {"text": chosen.args, "id": msg.id, "sender": msg.sender, "chat": msg.chat,
                   "channel": msg.channel, "session": session.id,
                   "files": for_skill(msg.files, self.workspace)}
        with trace.step("skill") as span:
            span.detail = f"{handler.intent} ({handler.source})"
            begin = time.perf_counter()
            try:
                result = handler.call(payload)
            except SkillError as e:
                span.outcome = "error"
                span.detail += f": {e}" + (f": {redact(e.detail)[-500:]}" if e.detail else "")
                log.warning("msg_id=%s %s", msg.id, e)
                return Outcome(chosen, session, f"{e} (msg_id {msg.id}).", "skill_error")
            try:
                files = reply_files(result.files, self.workspace)
            except ReplyFileRefused as e:
                span.outcome = "error"
                span.detail += f": {e}: {e.detail}"
                log.warning("msg_id=%s skill %s: %s: %s", msg.id, handler.intent, e, e.detail)
                return Outcome(chosen, session, f"Skill {handler.intent} failed: {e} "
                               f"(msg_id {msg.id}).", "skill_error")
        for inner in result.spans:  # tool and model calls the skill made, on one timeline
            trace.add_at(inner["step"], begin + inner["start_ms"] / 1000,
                         inner["duration_ms"], inner["outcome"], inner.get("detail", ""))
        return Outcome(chosen, session, result.text, files=files)
