"""Address allowlists, X-Forwarded-For from trusted proxies only, and lockout, tried as an
attacker would against the real app (in-process, the same chain every entry passes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.common.networks import parse_networks
from gateway.common.workspace import Workspace
from gateway.config import parse_config
from gateway.guards.chain import Caller, Refuse
from gateway.guards.lockout import LockoutBook, LockoutPolicy
from gateway.server.app import Gateway, build_gateway
from tests.conftest import model_config
from tests.fakes.fake_model import FakeModelServer

TOKEN = "a-static-token-long-enough-for-anything"


@pytest.fixture
def make(tmp_path: Path, fake_model: FakeModelServer) -> Iterator[Any]:
    built: list[Gateway] = []

    def build(**sections: Any) -> Gateway:
        auth = {"tokens": [TOKEN], **sections.pop("auth", {})}
        config = parse_config({**model_config(fake_model.url), "auth": auth, **sections})
        gateway = build_gateway(Workspace(tmp_path / f"ws{len(built)}"), config)
        gateway.channels.start()
        built.append(gateway)
        return gateway

    yield build
    for gateway in built:
        gateway.stop(5)


def call(gateway: Gateway, path: str, peer: str, token: str | None = TOKEN,
         forwarded: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    client = gateway.app.test_client()
    overrides = {"REMOTE_ADDR": peer}
    if path == "/api/v1/messages":
        return client.post(path, json={"text": "hi"}, headers=headers,
                           environ_overrides=overrides)
    return client.get(path, headers=headers, environ_overrides=overrides)


def test_the_console_answers_only_loopback_by_default(make: Any) -> None:
    gateway = make()
    assert call(gateway, "/api/v1/skills", "127.0.0.1").status_code == 200
    far = call(gateway, "/api/v1/skills", "203.0.113.9")
    assert far.status_code == 403 and "console.allow_ips" in far.json["error"]["message"]
    # messages are open to any address with a token (auth.allow_ips defaults to any)
    assert call(gateway, "/api/v1/messages", "203.0.113.9").status_code == 200


def test_a_forged_x_forwarded_for_is_ignored(make: Any) -> None:
    gateway = make(auth={"allow_ips": ["10.9.9.9/32"]})
    forged = call(gateway, "/api/v1/messages", "203.0.113.9", forwarded="10.9.9.9")
    assert forged.status_code == 403 and "auth.allow_ips" in forged.json["error"]["message"]
    console = call(gateway, "/api/v1/skills", "203.0.113.9", forwarded="127.0.0.1")
    assert console.status_code == 403  # no proxy is trusted: the header proves nothing


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(make: Any) -> None:
    gateway = make(auth={"allow_ips": ["10.9.9.9/32"], "trusted_proxies": ["127.0.0.1/32"]})
    through = call(gateway, "/api/v1/messages", "127.0.0.1", forwarded="6.6.6.6, 10.9.9.9")
    assert through.status_code == 200  # the hop nearest the proxy, not the client's claim
    spoofed = call(gateway, "/api/v1/messages", "127.0.0.1", forwarded="10.9.9.9, 6.6.6.6")
    assert spoofed.status_code == 403
    console = call(gateway, "/api/v1/skills", "127.0.0.1", forwarded="198.51.100.4")
    assert console.status_code == 403  # a remote client behind nginx is not loopback


def test_ten_bad_tokens_lock_the_address_out_even_with_a_good_one(make: Any) -> None:
    gateway = make()
    peer = "198.51.100.20"
    codes = [call(gateway, "/api/v1/messages", peer, token=f"guess-{i}").status_code
             for i in range(10)]
    assert codes == [401] * 9 + [429]
    locked = call(gateway, "/api/v1/messages", peer)  # the right token, too late
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 200
    assert "auth.lockout" in locked.json["error"]["message"]
    assert call(gateway, "/api/v1/messages", "198.51.100.21").status_code == 200
    loopback = [call(gateway, "/api/v1/skills", "127.0.0.1", token=f"g{i}").status_code
                for i in range(10)]
    assert loopback[-1] == 429  # loopback is not exempt unless configured


def test_lockout_ends_after_its_duration_and_forgets_old_failures() -> None:
    now = [1000.0]
    book = LockoutBook(clock=lambda: now[0])
    policy = LockoutPolicy(failures=3, window=10, duration=60)
    assert [book.failed("a", policy) for _ in range(2)] == [False, False]
    now[0] += 11  # outside the window: those two no longer count
    assert [book.failed("a", policy) for _ in range(3)] == [False, False, True]
    assert book.locked_for("a", policy) == 60
    now[0] += 61
    assert book.locked_for("a", policy) == 0
    exempt = LockoutPolicy(failures=1, exempt=parse_networks(["127.0.0.0/8"]))
    assert not book.failed("127.0.0.1", exempt)


def test_a_refused_address_hears_which_key_opens_it(make: Any) -> None:
    gateway = make(console={"allow_ips": ["192.0.2.0/24"]})
    verdict = gateway.pipeline.admit(Caller("console", "127.0.0.1", TOKEN))
    assert isinstance(verdict, Refuse) and verdict.guard == "address"
    assert call(gateway, "/api/v1/skills", "192.0.2.7").status_code == 200
