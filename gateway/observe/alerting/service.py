"""Alerts as one part the composition root starts and stops: the rules read from the metrics
window and the machine once a second, the notices go to the configured senders.

```python
alerting = Alerting(config.alerts, metrics.window)
logging.getLogger().addHandler(alerting.error_mail)  # ERROR lines by mail (when smtp is set)
alerting.start()                    # ticker and workers (greenlets once gevent has patched)
alerting.apply(new_config.alerts)   # hot reload
alerting.stop()
```
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping

from gateway.observe.alerting.config import AlertsConfig, RulesConfig
from gateway.observe.alerting.dispatch import Delivery, Joinable, Spawn, spawn_thread
from gateway.observe.alerting.errormail import ErrorMailHandler
from gateway.observe.alerting.rules import AlertEvaluator, Rule
from gateway.observe.alerting.senders import SmtpSender, build_sender
from gateway.observe.resources import MachineMeter
from gateway.observe.window import Window

log = logging.getLogger(__name__)

TICK = 1.0  # seconds between evaluations: windows of a few seconds work


def build_rules(rules: RulesConfig) -> list[Rule]:
    """The enabled rules, in the guide's order, each with its unit."""
    lat, fail, cpu, mem = rules.latency, rules.model_failure_rate, rules.cpu, rules.memory
    stale = rules.channel_stale
    candidates = [
        (lat.enabled, Rule("latency", "Message latency p95", lat.above, lat.window, "s",
                           lat.min_count)),
        (fail.enabled, Rule("model_failure_rate", "Model call failure rate", fail.above,
                            fail.window, "%", fail.min_count)),
        (cpu.enabled, Rule("cpu", "Machine CPU use", cpu.above, cpu.window, "%")),
        (mem.enabled, Rule("memory", "Machine memory use", mem.above, mem.window, "%")),
        (stale.enabled, Rule("channel_stale", "How long a channel has been stale (moltbot "
                             "channels list says which)", 0.0, stale.window, "s")),
    ]
    return [rule for enabled, rule in candidates if enabled]


class GatewayValues:
    """Each rule's current value: latency p95 (seconds) and the model failure rate (%) over
    the rule's window, from the metrics window; machine CPU and memory (%) sampled now (the
    evaluator's window does the "for a minute"); how long the stalest channel has been stale
    (seconds, 0 when none is), from `stale`."""

    def __init__(self, window: Window, machine: MachineMeter | None = None,
                 stale: Callable[[], Mapping[str, float]] | None = None) -> None:
        self.window = window
        self.machine = machine or MachineMeter()
        self.stale = stale
        self.rules: dict[str, Rule] = {}

    def __call__(self) -> dict[str, float | None]:
        values: dict[str, float | None] = {}
        if latency := self.rules.get("latency"):
            p95, count = self.window.latency(0.95, latency.window)
            values["latency"] = p95 if count >= latency.min_count else None
        if failures := self.rules.get("model_failure_rate"):
            failed, calls = self.window.model_failures(failures.window)
            values["model_failure_rate"] = (100.0 * failed / calls
                                            if calls >= failures.min_count else None)
        if "cpu" in self.rules or "memory" in self.rules:
            values["cpu"], values["memory"] = self.machine.read()
        if "channel_stale" in self.rules and self.stale is not None:
            values["channel_stale"] = max(self.stale().values(), default=0.0)
        return values


class Alerting:
    def __init__(self, config: AlertsConfig, window: Window, *,
                 machine: MachineMeter | None = None,
                 spawn: Spawn = spawn_thread, tick: float = TICK,
                 clock: Callable[[], float] = time.monotonic,
                 ssl_context: ssl.SSLContext | None = None,
                 stale: Callable[[], Mapping[str, float]] | None = None) -> None:
        """`ssl_context` is for SMTP's TLS (default: the system's CAs; tests pass one that
        trusts their own certificate); `stale` names each stale channel and for how long
        (`ChannelSet.stale`)."""
        self.spawn = spawn
        self.tick = tick
        self.ssl_context = ssl_context
        self.host = socket.gethostname()
        self.values = GatewayValues(window, machine, stale)
        self.evaluator = AlertEvaluator([], self.values, config.cooldown, host=self.host,
                                        clock=clock)
        self.error_mail = ErrorMailHandler(None, config.error_mail.interval, spawn=spawn,
                                           host=self.host)
        self.delivery = Delivery([], spawn=spawn)
        self.config = config
        self._stop = threading.Event()
        self._ticker: Joinable | None = None
        self._configure(config)

    def _configure(self, config: AlertsConfig) -> None:
        size = self.values.window.size
        if config.longest_window() > size:
            log.warning("alerts: a rule window of %.0fs is longer than the metrics window "
                        "(%ds); its values cover the last %ds only", config.longest_window(),
                        size, size)
        rules = build_rules(config.rules) if config.enabled else []
        self.values.rules = {r.name: r for r in rules}
        self.evaluator.use_rules(rules, config.cooldown)
        senders = [build_sender(n, self.ssl_context) for n in config.notify]
        self.delivery = Delivery(senders if config.enabled else [], spawn=self.spawn)
        smtp = config.smtp()
        on = config.enabled and config.error_mail.enabled and smtp is not None
        self.error_mail.mailer = SmtpSender(smtp, self.ssl_context) if on and smtp else None
        self.error_mail.interval = config.error_mail.interval
        self.config = config
        if rules and not config.notify:
            log.info("alerts: rules are on but alerts.notify is empty; alerts are only logged")

    def start(self) -> None:
        """Start the ticker, the sender workers and the error-mail worker. Add
        `self.error_mail` to the root logger to mail ERROR lines."""
        self.delivery.start()
        self.error_mail.start()
        self._ticker = self.spawn(self._run)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            self.evaluate_once()

    def evaluate_once(self) -> None:
        try:
            notices = self.evaluator.evaluate()
        except Exception:
            log.exception("alerts: evaluating the rules failed")
            return
        for notice in notices:
            log.warning("alert %s %s: %s", notice.rule, notice.state, notice.message)
            self.delivery.submit(notice)

    def apply(self, config: AlertsConfig) -> None:
        """Hot reload: new rules and senders; a rule that stays keeps its state."""
        old = self.delivery
        self._configure(config)
        if self._ticker is not None:
            self.delivery.start()
            old.stop()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop evaluating; give queued notices and gathered error lines one last attempt."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout)
        self.delivery.stop(timeout)
        self.error_mail.close()
