"""When an alert fires and when it is resolved. Pure: the clock and the values are given.

Each evaluation reads one value per rule. A rule fires when its value has been above the
threshold at every evaluation for at least its window (a missing value, "no data", counts as
not above). It then fires again only once the cooldown has passed since its last firing notice,
whether the condition held all along (a reminder) or came back. When the value falls back after
a firing notice, one "resolved" notice follows; a breach whose firing the cooldown swallowed
resolves silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

State = Literal["firing", "resolved"]


@dataclass(frozen=True)
class Rule:
    """`unit` is "s" (a duration) or "%"; values and `above` are in that unit."""

    name: str
    title: str
    above: float
    window: float
    unit: Literal["s", "%"]
    min_count: int = 1

    def show(self, value: float | None) -> str:
        if value is None:
            return "no data"
        if self.unit == "%":
            return f"{value:.1f}%"
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


@dataclass(frozen=True)
class Notice:
    """What every sender delivers; `as_json` is the generic webhook's body."""

    rule: str
    state: State
    value: float | None
    threshold: float
    at: float  # Unix time
    message: str

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["at"] = datetime.fromtimestamp(self.at, UTC).isoformat(timespec="seconds")
        return body

    @property
    def subject(self) -> str:
        return f"[Moltbot] {self.state.upper()} {self.rule}: {self.message}"


def _span(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def describe(rule: Rule, state: State, value: float | None, host: str) -> str:
    limit = f"alert above {rule.show(rule.above)}"
    if state == "firing":
        return (f"{rule.title} is {rule.show(value)} for {_span(rule.window)} on {host} "
                f"({limit}).")
    if value is None:
        return f"{rule.title}: no data in the last {_span(rule.window)} on {host} ({limit})."
    return f"{rule.title} is back to {rule.show(value)} on {host} ({limit})."


@dataclass
class _RuleState:
    above_since: float | None = None
    last_fired: float | None = None
    notified: bool = False  # this breach's firing notice went out


class AlertEvaluator:
    """Call `evaluate()` once a second (any steady interval works); it returns the notices
    to send. `source` returns the current value of each rule by name (None: no data)."""

    def __init__(self, rules: list[Rule], source: Callable[[], Mapping[str, float | None]],
                 cooldown: float, *, host: str = "localhost",
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.rules = rules
        self.source = source
        self.cooldown = cooldown
        self.host = host
        self.clock = clock
        self.wall = wall
        self._states: dict[str, _RuleState] = {}

    def use_rules(self, rules: list[Rule], cooldown: float) -> None:
        """A config change: rules that stay keep their state (a firing alert stays firing)."""
        self.rules, self.cooldown = rules, cooldown
        names = {r.name for r in rules}
        self._states = {k: v for k, v in self._states.items() if k in names}

    def is_firing(self, name: str) -> bool:
        state = self._states.get(name)
        return bool(state and state.notified)

    def evaluate(self) -> list[Notice]:
        values = self.source()
        now = self.clock()
        notices = []
        for rule in self.rules:
            value = values.get(rule.name)
            state = self._states.setdefault(rule.name, _RuleState())
            if value is not None and value > rule.above:
                if state.above_since is None:
                    state.above_since = now
                held = now - state.above_since >= rule.window
                cooled = state.last_fired is None or now - state.last_fired >= self.cooldown
                if held and cooled:
                    state.last_fired, state.notified = now, True
                    notices.append(self._notice(rule, "firing", value))
            else:
                if state.notified:
                    notices.append(self._notice(rule, "resolved", value))
                state.above_since, state.notified = None, False
        return notices

    def _notice(self, rule: Rule, state: State, value: float | None) -> Notice:
        return Notice(rule.name, state, value, rule.above, self.wall(),
                      describe(rule, state, value, self.host))
