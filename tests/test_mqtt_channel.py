"""The MQTT channel's parts without a gateway: its options (every key checked, errors that
say what to fix), a device's payload, and the liveness bookkeeping (on a fake clock)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.channels.liveness import Liveness
from gateway.channels.mqtt import MqttOptions, read_payload
from gateway.channels.table import channel_options
from gateway.common.options import ConfigError
from gateway.config import Config


def problems(mqtt: Any) -> list[str]:
    config = Config.model_validate({"channels": {"mqtt": mqtt}})
    with pytest.raises(ConfigError) as refused:
        channel_options(config, "config.yaml")
    return refused.value.problems


def test_defaults_and_switching_on_by_writing_the_section() -> None:
    assert MqttOptions.model_validate({}).enabled is False  # no section: off
    options = MqttOptions.model_validate({"url": "mqtts://broker.lan"})
    assert options.enabled and options.tls
    settings = options.link_settings()
    assert (settings.host, settings.port, settings.client_id) == ("broker.lan", 8883,
                                                                  "moltbot-gateway")
    assert settings.subscriptions == ("moltbot/in/+",)
    assert settings.probe_topic == "moltbot/in/moltbot-gateway"
    assert (settings.keepalive, settings.session_expiry) == (60, 86400)
    plain = MqttOptions.model_validate({"url": "mqtt://127.0.0.1", "enabled": False})
    assert plain.enabled is False and plain.link_settings().port == 1883


@pytest.mark.parametrize(("given", "expected"), [
    ({"url": "http://broker:1883"}, "channels.mqtt.url: expected mqtt://host:port or "
                                    "mqtts://host:port (TLS)"),
    ({"url": "mqtt://user:pw@broker"}, "put the credentials in channels.mqtt.username"),
    ({"url": "mqtt://broker:99999"}, "the port must be a number from 1 to 65535"),
    ({"url": "mqtt://broker/topic"}, "the URL takes host and port only"),
    ({"topic_prefix": "a/+/b"}, "channels.mqtt.topic_prefix: expected topic levels"),
    ({"topic_prefix": "home//x"}, "no '+', '#', empty level"),
    ({"topic_prefix": "$SYS"}, "leading '$'"),
    ({"client_id": "gate/way"}, "channels.mqtt.client_id: client_id (it names the gateway's "
                                "probe topic) must be one topic level"),
    ({"ca_file": "/etc/ssl/certs/ca-certificates.crt"}, "ca_file need a TLS URL: mqtts://"),
    ({"url": "mqtts://b", "ca_file": "relative/ca.pem"}, "expected an absolute path"),
    ({"url": "mqtts://b", "ca_file": "/nonexistent/ca.pem"}, "no such file: /nonexistent"),
    ({"password": "secret-value"}, "a password needs a username"),
    ({"keepalive": 1}, "channels.mqtt.keepalive: Input should be greater than or equal to 5"),
    ({"keepalive": "soon"}, "expected a duration such as 30"),
    ({"session_expiry": "10s"}, "channels.mqtt.session_expiry: Input should be greater"),
    ({"probe_interval": "1m", "stale_after": "30s"}, "stale_after (30 s) must be longer than "
                                                     "probe_interval (60 s)"),
    ({"qos": 2}, "channels.mqtt.qos: unknown key"),
])
def test_each_wrong_option_is_refused_with_its_key_and_the_fix(given: dict[str, Any],
                                                               expected: str) -> None:
    found = problems(given)
    assert any(expected in p for p in found), found
    assert not any("secret-value" in p for p in found)


def test_tls_files_and_credentials(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem"))
    for path in (ca, cert, key):
        path.write_text("-", encoding="utf-8")
    options = MqttOptions.model_validate({"url": "mqtts://b:8884", "ca_file": str(ca),
                                          "cert_file": str(cert), "key_file": str(key),
                                          "username": "gw", "password": "pw"})
    settings = options.link_settings()
    assert (settings.tls, settings.port, settings.ca_file, settings.username) == (
        True, 8884, str(ca), "gw")
    assert "pw" not in repr(options)
    assert any("key_file needs cert_file" in p for p in problems(
        {"url": "mqtts://b", "key_file": str(key)}))


def test_the_channel_key_proves_the_channel_and_never_changes_an_options_comparison() -> None:
    a = MqttOptions.model_validate({"url": "mqtt://b"})
    b = MqttOptions.model_validate({"url": "mqtt://b"})
    assert a == b and a.bot_token == b.bot_token and len(a.bot_token) >= 32
    assert "bot_token" not in a.model_dump()


@pytest.mark.parametrize(("payload", "fields", "problem"), [
    (b'{"id": "7", "text": "hi"}', {"id": "7", "text": "hi"}, None),
    (b'{"id": 7, "text": "hi", "extra": 1}', {"id": 7, "text": "hi"}, None),
    (b"turn the lights on", {"text": "turn the lights on"}, None),
    ("早上好".encode(), {"text": "早上好"}, None),
    (b'"a JSON string is text too"', {"text": '"a JSON string is text too"'}, None),
    (b'{"id": "7"}', None, 'has no "text"'),
    (b'{"text": "unclosed', None, 'starts with "{" but is not JSON'),
    (b"\xff\xfe", None, "not UTF-8"),
])
def test_a_devices_payload(payload: bytes, fields: dict[str, Any] | None,
                           problem: str | None) -> None:
    found, wrong = read_payload(payload)
    if problem is None:
        assert (found, wrong) == (fields, None)
    else:
        assert wrong is not None and problem in wrong


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_liveness_is_judged_from_what_flowed_and_restarts_once_per_episode() -> None:
    clock = Clock()
    live = Liveness(bound=10, clock=clock)
    assert live.silent_for() is None and not live.check()  # not connected: no judgement
    live.connected()
    clock.now += 9
    live.mark_heard()  # keepalives alone are not flow
    clock.now += 2
    assert live.check() and live.is_stale and live.stale_for() == 0
    assert not live.check()  # the same episode does not start twice
    live.restarted = True
    live.disconnected()
    live.connected()  # a restart that did not help: still stale, restart spent
    clock.now += 20
    assert live.is_stale and live.restarted and live.stale_for() == 20
    live.mark_probe_back()  # flow again: the episode ends, the next one may restart
    assert not live.is_stale and not live.restarted
    clock.now += 5
    live.mark_in()
    clock.now += 8
    assert not live.check()
    assert "probe back 13 s ago" in live.describe() and "last in 8 s ago" in live.describe()
