"""One message on its way through the core: the values every step needs, passed as one.

The pipeline builds a `Turn` when a message is admitted and hands it down (session, route,
executor, chat, model call): the message, its trace, the settings and skills snapshots it read
once when it started (a reload mid-message never mixes two configs), and the sender's stream
(`on_delta`) and cancel flag, which only the model call uses. A step takes the turn, not a list
of its parts, so adding what a message carries (its files, its outbound replies) changes one
class, not every signature on the way.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from gateway.core.builtins import Builtins
from gateway.core.message import Message, Trace
from gateway.core.settings import Settings
from gateway.models.base import OnDelta
from gateway.skills.catalog import SkillSet


@dataclass
class Turn:
    msg: Message
    trace: Trace
    settings: Settings
    skills: SkillSet
    on_delta: OnDelta | None = None  # the sender's stream of the reply as it forms
    cancel: threading.Event | None = None  # set when the sender went away
    builtins: Builtins = field(default_factory=Builtins)  # the gateway's own commands, tools

    @property
    def model(self) -> str | None:
        """The model chat goes to: the one the client chose (`ClientContext.model`, a
        configured one: its channel checked), else the settings' default."""
        context = self.msg.client_context
        return context.model if context and context.model else self.settings.chat_model
