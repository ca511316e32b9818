"""When a rule fires and resolves, driven step by step by a hand-moved clock."""

from __future__ import annotations

from gateway.observe.alerting.config import AlertsConfig, RulesConfig
from gateway.observe.alerting.rules import AlertEvaluator, Notice, Rule
from gateway.observe.alerting.service import GatewayValues, build_rules
from gateway.observe.window import Window
from tests.fakes.clock import FakeClock

LATENCY = Rule("latency", "Message latency p95", above=2.0, window=5.0, unit="s")


class Driver:
    """An evaluator with a settable value and a clock moved one second per step."""

    def __init__(self, rules: list[Rule], cooldown: float = 600.0) -> None:
        self.clock = FakeClock(0.0)
        self.values: dict[str, float | None] = {}
        self.evaluator = AlertEvaluator(rules, lambda: self.values, cooldown, host="box",
                                        clock=self.clock, wall=lambda: 1_700_000_000.0)

    def run(self, seconds: int, **values: float | None) -> list[tuple[float, Notice]]:
        """Evaluate once a second for `seconds` seconds with these values."""
        self.values.update(values)
        out = []
        for _ in range(seconds):
            out += [(self.clock.now, n) for n in self.evaluator.evaluate()]
            self.clock.now += 1
        return out


def test_fires_once_after_holding_for_its_window_then_resolves_once() -> None:
    d = Driver([LATENCY])
    assert d.run(5, latency=3.0) == []  # above at t=0..4: not yet for 5 s
    fired = d.run(20, latency=3.0)
    assert [(t, n.state) for t, n in fired] == [(5.0, "firing")]
    notice = fired[0][1]
    assert (notice.rule, notice.value, notice.threshold) == ("latency", 3.0, 2.0)
    assert notice.message == ("Message latency p95 is 3.00 s for 5s on box "
                              "(alert above 2.00 s).")
    resolved = d.run(3, latency=0.4)
    assert [(t, n.state, n.value) for t, n in resolved] == [(25.0, "resolved", 0.4)]
    assert resolved[0][1].message == ("Message latency p95 is back to 400 ms on box "
                                      "(alert above 2.00 s).")


def test_a_dip_restarts_the_window() -> None:
    d = Driver([LATENCY])
    assert d.run(4, latency=3.0) == []
    assert d.run(1, latency=1.0) == []  # below before the window was full: nothing to resolve
    assert d.run(4, latency=3.0) == []
    assert d.run(1, latency=None) == []  # no data counts as not above
    assert [n.state for _, n in d.run(6, latency=3.0)] == ["firing"]
    quiet = d.run(1, latency=None)[0][1]  # the traffic stopped: resolved, said as such
    assert (quiet.state, quiet.value) == ("resolved", None)
    assert quiet.message == ("Message latency p95: no data in the last 5s on box "
                             "(alert above 2.00 s).")


def test_exactly_at_the_threshold_is_not_above() -> None:
    d = Driver([LATENCY])
    assert d.run(30, latency=2.0) == []


def test_no_second_firing_within_the_cooldown_and_a_reminder_after_it() -> None:
    d = Driver([LATENCY], cooldown=60)
    assert [t for t, _ in d.run(100, latency=3.0)] == [5.0, 65.0]  # held all along: reminder
    assert [n.state for _, n in d.run(1, latency=0.1)] == ["resolved"]


def test_a_breach_inside_the_cooldown_is_swallowed_and_resolves_silently() -> None:
    d = Driver([LATENCY], cooldown=60)
    assert [n.state for _, n in d.run(6, latency=3.0)] == ["firing"]  # at t=5
    assert [n.state for _, n in d.run(1, latency=0.1)] == ["resolved"]
    assert d.run(20, latency=3.0) == []  # t=7..26, within 60 s of the firing at t=5
    assert d.run(1, latency=0.1) == []  # never announced, so nothing to resolve
    later = d.run(40, latency=3.0)  # t=28.., held 5 s and past the cooldown: fires again
    assert [(t, n.state) for t, n in later] == [(65.0, "firing")]


def test_rules_are_independent() -> None:
    cpu = Rule("cpu", "Machine CPU use", above=80.0, window=3.0, unit="%")
    d = Driver([LATENCY, cpu])
    notices = d.run(6, latency=3.0, cpu=95.0)
    assert [(t, n.rule) for t, n in notices] == [(3.0, "cpu"), (5.0, "latency")]
    assert notices[0][1].message == "Machine CPU use is 95.0% for 3s on box (alert above 80.0%)."
    assert [n.rule for _, n in d.run(1, cpu=10.0)] == ["cpu"]
    assert d.evaluator.is_firing("latency") and not d.evaluator.is_firing("cpu")


def test_a_config_change_keeps_a_firing_rule_firing() -> None:
    d = Driver([LATENCY])
    d.run(6, latency=3.0)
    d.evaluator.use_rules([Rule("latency", "Message latency p95", 2.5, 5.0, "s")], 600)
    assert d.run(5, latency=3.0) == []  # still firing: no second notice
    assert [n.state for _, n in d.run(1, latency=1.0)] == ["resolved"]
    d.evaluator.use_rules([], 600)
    assert d.run(10, latency=9.0) == []


def test_the_webhook_body_has_the_documented_keys() -> None:
    notice = Driver([LATENCY]).run(6, latency=3.0)[0][1]
    assert notice.as_json() == {"rule": "latency", "state": "firing", "value": 3.0,
                                "threshold": 2.0, "at": "2023-11-14T22:13:20+00:00",
                                "message": notice.message}


# -- values from the metrics window --------------------------------------------------------
def test_gateway_values_read_the_window_over_each_rules_window() -> None:
    clock = FakeClock()
    window = Window(120, clock=clock)
    rules = RulesConfig.model_validate({"latency": {"window": "10s", "min_count": 3},
                                        "model_failure_rate": {"window": "20s",
                                                               "min_count": 4},
                                        "cpu": {"enabled": False},
                                        "memory": {"enabled": False}})
    values = GatewayValues(window)
    values.rules = {r.name: r for r in build_rules(rules)}
    assert values() == {"latency": None, "model_failure_rate": None}

    for seconds in (0.1, 0.2, 3.0):
        window.record_message("ws", "m", seconds, error=False)
    window.record_model_call("m", "http://a", "ws", 0.1, ok=False)
    for _ in range(3):
        window.record_model_call("m", "http://a", "ws", 0.1, ok=True)
    got = values()
    assert 3.0 <= got["latency"] <= 3.0 * 1.05  # p95 of three is the largest
    assert got["model_failure_rate"] == 25.0

    clock.now += 15  # the messages have left the 10 s window, the calls not the 20 s one
    assert values() == {"latency": None, "model_failure_rate": 25.0}


def test_cpu_and_memory_come_from_the_machine() -> None:
    values = GatewayValues(Window(60))
    values.rules = {r.name: r for r in build_rules(AlertsConfig().rules)}
    got = values()
    assert 0.0 <= got["cpu"] <= 100.0
    assert 0.0 < got["memory"] <= 100.0
