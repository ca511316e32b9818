"""End to end: messages get slow, and within 10 seconds a mail (real SMTP, STARTTLS and login)
and the WeCom and DingTalk robot messages arrive; when they are fast again, "resolved" follows.

The config is the `alerts:` section as a user writes it, parsed by the gateway's own
`parse_config`; the latencies go through `Metrics` as the pipeline reports them.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from gateway.config import parse_config
from gateway.observe.alerting.config import AlertsConfig
from gateway.observe.alerting.service import Alerting
from gateway.observe.metrics import Metrics
from gateway.observe.window import Window
from tests.conftest import ROOT
from tests.fakes.clock import FakeClock
from tests.fakes.fake_robots import DingTalkRobot, WebhookReceiver, WeComRobot
from tests.fakes.mail_server import MailServer

DEADLINE = 10.0  # the promise: within 10 seconds of the threshold being crossed


class Traffic:
    """Messages answered every 20 ms in a background thread, each taking `latency` seconds."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.latency = 0.05
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.metrics.message_started()
            self.metrics.model_call("llama2", "http://127.0.0.1:11434", self.latency, ok=True,
                                    channel="ws", prompt_tokens=20, completion_tokens=5)
            self.metrics.message_finished("ws", "chat", self.latency, model="llama2",
                                          session="ws:ada")

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def servers() -> Iterator[tuple[MailServer, WeComRobot, DingTalkRobot, WebhookReceiver]]:
    with (MailServer(tls=True, users={"ops": "mail-pass"}) as mail,
          WeComRobot() as wecom, DingTalkRobot(keyword="Moltbot") as dingtalk,
          WebhookReceiver() as webhook):
        yield mail, wecom, dingtalk, webhook  # type: ignore[misc]


def test_a_slow_minute_reaches_mail_and_robots_then_resolves(servers: tuple) -> None:
    mail, wecom, dingtalk, webhook = servers
    secrets = {"smtp": "mail-pass", "dingtalk": dingtalk.secret}
    config = parse_config({"alerts": {
        "rules": {"latency": {"above": "200ms", "window": "2s", "min_count": 5},
                  "model_failure_rate": {"enabled": False},
                  "cpu": {"enabled": False}, "memory": {"enabled": False}},
        "cooldown": "10m",
        "error_mail": {"enabled": False},
        "notify": [
            {"type": "smtp", "host": "127.0.0.1", "port": mail.port, "starttls": True,
             "username": "ops", "password": "${keyring:smtp}", "from": "moltbot@example.com",
             "to": ["ops@example.com"]},
            {"type": "wecom", "webhook_url": wecom.webhook_url, "msgtype": "markdown"},
            {"type": "dingtalk", "webhook_url": dingtalk.webhook_url,
             "secret": "${keyring:dingtalk}"},
            {"type": "webhook", "url": f"{webhook.url}/alerts"},
        ]}}, secret_lookup=secrets.get).alerts

    metrics = Metrics()
    alerting = Alerting(config, metrics.window, tick=0.5, ssl_context=mail.client_context())
    alerting.start()
    try:
        with Traffic(metrics) as traffic:
            traffic.latency = 0.9  # the model slows down: p95 goes above 200 ms
            crossed = time.monotonic()
            subject = mail.wait_for(1, timeout=DEADLINE)[0]["Subject"]
            robot = wecom.wait_accepted(1, timeout=DEADLINE - (time.monotonic() - crossed))
            signed = dingtalk.wait_accepted(1, timeout=DEADLINE - (time.monotonic() - crossed))
            hook = webhook.wait_accepted(1, timeout=DEADLINE - (time.monotonic() - crossed))

            assert subject.startswith("[Moltbot] FIRING latency: Message latency p95 is ")
            assert "(alert above 200 ms)" in subject
            assert "firing</font>: latency**" in robot[0].body["markdown"]["content"]
            assert signed[0].body["text"]["content"].startswith("Moltbot firing: latency")
            assert hook[0].body["state"] == "firing" and hook[0].body["threshold"] == 0.2
            assert hook[0].body["value"] > 0.2
            assert mail.logins == ["ops"]

            traffic.latency = 0.01  # fast again: one resolved notice each
            mails = mail.wait_for(2)
            assert mails[1]["Subject"].startswith("[Moltbot] RESOLVED latency: Message "
                                                  "latency p95 is back to ")
            assert wecom.wait_accepted(2)[1].body["markdown"]["content"].startswith(
                '**Moltbot <font color="info">resolved</font>')
            assert "resolved" in dingtalk.wait_accepted(2)[1].body["text"]["content"]
            assert webhook.wait_accepted(2)[1].body["state"] == "resolved"
    finally:
        alerting.stop()
    assert len(mail.inbox.messages) == 2  # once each way: the cooldown holds
    snap = metrics.snapshot(60)
    assert snap["models"]["llama2"]["tokens"]["prompt"] > 0


def test_a_config_change_swaps_the_senders_and_keeps_the_alert_firing() -> None:
    clock = FakeClock()
    window = Window(60, clock=clock)
    rules = {"latency": {"above": "100ms", "window": "2s", "min_count": 1},
             "model_failure_rate": {"enabled": False}, "cpu": {"enabled": False},
             "memory": {"enabled": False}}

    def alerts_to(receiver: WebhookReceiver) -> AlertsConfig:
        return parse_config({"alerts": {"rules": rules, "notify": [
            {"type": "webhook", "url": f"{receiver.url}/alerts"}]}}).alerts

    with WebhookReceiver() as first, WebhookReceiver() as second:
        alerting = Alerting(alerts_to(first), window, tick=3600, clock=clock)
        alerting.start()  # the ticker waits an hour: this test evaluates by hand
        try:
            for _ in range(3):
                window.record_message("ws", "m", 0.5, error=False)
                alerting.evaluate_once()
                clock.now += 1
            assert first.wait_accepted()[0].body["state"] == "firing"

            alerting.apply(alerts_to(second))
            clock.now += 5  # the slow messages leave the window: no data, resolved
            alerting.evaluate_once()
            assert second.wait_accepted()[0].body["state"] == "resolved"
        finally:
            alerting.stop()
        assert len(first.received) == 1


GEVENT_GATEWAY = """
from gevent import monkey

monkey.patch_all(queue=False)  # as gateway.server does

import sys
import time

from gateway.config import parse_config
from gateway.observe.alerting.config import AlertsConfig
from gateway.observe.alerting.service import Alerting
from gateway.observe.metrics import Metrics
from gateway.observe.window import Window
from tests.conftest import ROOT

config = parse_config({"alerts": {"rules": {
    "latency": {"above": "100ms", "window": "1s", "min_count": 1},
    "model_failure_rate": {"enabled": False}, "cpu": {"enabled": False},
    "memory": {"enabled": False}}, "notify": [{"type": "webhook", "url": sys.argv[1]}]}}).alerts
metrics = Metrics()
alerting = Alerting(config, metrics.window, tick=0.2)
alerting.start()
deadline = time.monotonic() + 20
while time.monotonic() < deadline and not alerting.delivery.workers[0].delivered:
    metrics.message_started()
    metrics.message_finished("ws", "chat", 0.5, model="m")
    time.sleep(0.05)  # gevent's sleep: the ticker and the sender run in between
alerting.stop()
print("delivered", alerting.delivery.workers[0].delivered)
"""


def test_alerts_run_as_greenlets_under_gevent() -> None:
    with WebhookReceiver() as receiver:
        result = subprocess.run([sys.executable, "-c", GEVENT_GATEWAY, f"{receiver.url}/a"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["delivered", "1"]
        assert receiver.accepted[0].body["rule"] == "latency"
