"""The `alerts:` section: the guide's defaults, the issue's example, and clear refusals."""

from __future__ import annotations

import pytest
import yaml

from gateway.common.options import ConfigError
from gateway.config import parse_config
from gateway.observe.alerting.config import (
    AlertsConfig,
    DingTalkNotify,
    SmtpNotify,
    WebhookNotify,
    WeComNotify,
    parse_percent,
)

ISSUE_EXAMPLE = """
alerts:
  rules:                      # each: above, window (how long it must hold)
    latency: {above: 2s, window: 1m}           # message latency p95
    model_failure_rate: {above: 5%, window: 1m}
    cpu: {above: 80%, window: 1m}
    memory: {above: 80%, window: 1m}
  cooldown: 10m
  notify:
    - {type: webhook, url: "https://hooks.example.com/moltbot"}
    - {type: smtp, host: smtp.example.com, port: 587, starttls: true, username: ops,
       password: "${keyring:smtp}", from: bot@example.com, to: [ops@example.com]}
    - {type: wecom, webhook_url: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"}
    - {type: dingtalk, webhook_url: "https://oapi.dingtalk.com/robot/send?access_token=t",
       secret: "${keyring:dingtalk}"}
"""


def test_defaults_are_the_guides_rules() -> None:
    alerts = AlertsConfig()
    rules = alerts.rules
    assert (rules.latency.above, rules.latency.window) == (2.0, 60.0)
    assert (rules.model_failure_rate.above, rules.model_failure_rate.window) == (5.0, 60.0)
    assert (rules.cpu.above, rules.memory.above) == (80.0, 80.0)
    assert alerts.cooldown == 600.0
    assert alerts.notify == []
    assert parse_config({}).alerts == alerts


def test_the_issues_example_parses_with_secrets_from_the_keyring() -> None:
    secrets = {"smtp": "mail-pass", "dingtalk": "SECabc"}
    config = parse_config(yaml.safe_load(ISSUE_EXAMPLE), secret_lookup=secrets.get).alerts
    webhook, smtp, wecom, dingtalk = config.notify
    assert isinstance(webhook, WebhookNotify) and webhook.url.endswith("/moltbot")
    assert isinstance(smtp, SmtpNotify)
    assert (smtp.host, smtp.port, smtp.starttls, smtp.username) == (
        "smtp.example.com", 587, True, "ops")
    assert smtp.password == "mail-pass" and smtp.from_ == "bot@example.com"
    assert isinstance(wecom, WeComNotify) and wecom.msgtype == "text"
    assert isinstance(dingtalk, DingTalkNotify) and dingtalk.secret == "SECabc"
    assert config.smtp() is smtp
    assert "mail-pass" not in repr(config) and "SECabc" not in repr(config)


def test_short_windows_and_other_spellings() -> None:
    config = parse_config({"alerts": {"rules": {
        "latency": {"above": "500ms", "window": "5s"},
        "model_failure_rate": {"above": 12.5, "window": 10},
        "cpu": {"enabled": False}}, "cooldown": 0}}).alerts
    assert (config.rules.latency.above, config.rules.latency.window) == (0.5, 5.0)
    assert config.rules.model_failure_rate.above == 12.5
    assert config.rules.cpu.enabled is False
    assert config.cooldown == 0


@pytest.mark.parametrize(("alerts", "problem"), [
    ({"rules": {"latency": {"abov": "2s"}}},
     "alerts.rules.latency.abov: unknown key; remove it or check its spelling"),
    ({"rulez": {}}, "alerts.rulez: unknown key"),
    ({"rules": {"cpu": {"above": "eighty"}}},
     "alerts.rules.cpu.above: expected a percent such as '5%' or 80"),
    ({"rules": {"memory": {"above": "120%"}}},
     "alerts.rules.memory.above: Input should be less than or equal to 100"),
    ({"rules": {"latency": {"window": "0s"}}},
     "alerts.rules.latency.window: Input should be greater than or equal to 1"),
    ({"cooldown": "soon"}, "alerts.cooldown: expected a duration"),
    ({"notify": [{"type": "sms"}]}, "alerts.notify.0: Input tag 'sms' found using 'type'"),
    ({"notify": [{"type": "webhook", "url": "ftp://x"}]},
     "alerts.notify.0.webhook.url: expected an http:// or https:// URL"),
    ({"notify": [{"type": "smtp", "host": "h", "from": "a@b", "to": []}]},
     "alerts.notify.0.smtp.to: List should have at least 1 item"),
    ({"notify": [{"type": "smtp", "host": "h", "from": "a@b", "to": ["c@d"], "ssl": True}]},
     "choose ssl: true (port 465) or starttls: true (port 587), not both"),
    ({"notify": [{"type": "wecom", "webhook_url": "https://x", "msgtype": "image"}]},
     "alerts.notify.0.wecom.msgtype: Input should be 'text' or 'markdown'"),
    ({"notify": [{"type": "dingtalk", "webhook_url": "https://x", "sekret": "S"}]},
     "alerts.notify.0.dingtalk.sekret: unknown key"),
])
def test_wrong_values_are_refused_with_their_path(alerts: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"alerts": alerts})
    assert any(p.startswith(problem) or problem in p for p in caught.value.problems), \
        caught.value.problems


def test_percent_spellings() -> None:
    assert parse_percent("5%") == parse_percent(" 5 % ") == parse_percent(5) == 5.0
    with pytest.raises(ValueError):
        parse_percent(True)
