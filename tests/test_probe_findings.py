"""Issue 14's probe findings, each replayed against the real gateway process the way it was
found; every test here failed on the main branch before its fix."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path

import httpx
import pytest
import websocket

from tests.conftest import (
    GatewayProcess,
    free_port,
    model_config,
    new_token,
    run_cli,
    write_config,
)
from tests.fakes.fake_model import FakeModelServer


def ws_url(gw: GatewayProcess) -> str:
    return f"ws://127.0.0.1:{gw.port}/ws"


def test_4a_a_foreign_page_cannot_lock_the_owner_out(gateway: GatewayProcess) -> None:
    for _ in range(10):  # the probe: ten handshakes from a page on another site
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(ws_url(gateway), timeout=10,
                                        origin="https://evil.example")
        assert refused.value.status_code == 403
        assert b"evil.example" in refused.value.resp_body
    assert gateway.post("the owner is still served").status_code == 200
    # a page of our own origin that mistypes ten times locks out browsers on this address,
    # never the owner's valid token used from a program
    codes = []
    for i in range(10):
        ws = websocket.create_connection(ws_url(gateway), timeout=10)  # Origin: ours
        ws.send(json.dumps({"type": "auth", "token": f"mb_guess_{i}"}))
        codes.append(json.loads(ws.recv())["code"])
        ws.close()
    assert codes == ["unauthorized"] * 9 + ["rate_limited"]
    assert gateway.post("still the owner's").status_code == 200


BOT = "enterprise:probe-bot-token"


def start_im(home: Path, fake_model: FakeModelServer, monkeypatch: pytest.MonkeyPatch,
             **sections: object) -> GatewayProcess:
    """The gateway with the guide's enterprise_im channel; strangers are let in, so that what
    is tested is the finding, not the stranger policy."""
    monkeypatch.setenv("IM_PLATFORM_TOKEN", BOT)
    write_config(home, {**model_config(fake_model.url),
                        "channels": {"enterprise_im": {"bot_token": "${IM_PLATFORM_TOKEN}"}},
                        "security": {"stranger_mode": "open"}, **sections})
    return GatewayProcess(home, free_port()).start()


def im_post(gw: GatewayProcess, sender: str, text: str, msg_id: str,
            token: str = BOT) -> httpx.Response:
    return httpx.post(f"{gw.url}/api/im", timeout=30,
                      headers={"Authorization": f"Bearer {token}"},
                      json={"id": msg_id, "sender": sender, "chat": sender, "text": text})


def test_4b_unsigned_posts_spend_no_sender_or_global_budget(
        home: Path, fake_model: FakeModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = start_im(home, fake_model, monkeypatch, auth={
        "rate_limit": {"per_sender": "5/min", "global": "5/min", "per_ip": "1000/min",
                       "exempt": []},
        "lockout": {"failures": 100}})
    try:
        forged = [im_post(gw, "alice", "hi", f"f{i}", token="wrong").status_code
                  for i in range(12)]
        assert forged == [401] * 12  # the probe got 429 from the 6th on
        real = im_post(gw, "alice", "hello from alice", "a1")
        assert real.status_code == 200 and real.json()["reply"] == "echo: hello from alice"
        assert gw.post("and the owner").status_code == 200  # the global budget is intact
    finally:
        gw.stop()


def connect_from(gw: GatewayProcess, source: str) -> socket.socket:
    """A TCP connection to the gateway from another loopback address (127.0.0.0/8 is ours)."""
    return socket.create_connection(("127.0.0.1", gw.port), timeout=20,
                                    source_address=(source, 0))


def healthz_from(gw: GatewayProcess, source: str) -> bytes:
    with connect_from(gw, source) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


def test_4c_idle_sockets_are_timed_from_the_accept_and_counted_per_loopback_address(
        home: Path, fake_model: FakeModelServer) -> None:
    write_config(home, {**model_config(fake_model.url),
                        "gateway": {"request_timeout": 5, "keepalive_timeout": 60,
                                    "max_connections_per_ip": 4},
                        "auth": {"trusted_proxies": ["127.0.13.1/32"]}})
    gw = GatewayProcess(home, free_port()).start()
    idle: list[socket.socket] = []
    try:
        idle += [connect_from(gw, "127.0.12.1") for _ in range(4)]  # sending nothing at all
        crowded = healthz_from(gw, "127.0.12.1")
        assert crowded.startswith(b"HTTP/1.1 503") and b"max_connections_per_ip" in crowded
        assert healthz_from(gw, "127.0.0.1").startswith(b"HTTP/1.1 200")  # another address
        idle += [connect_from(gw, "127.0.13.1") for _ in range(5)]  # the trusted proxy
        assert healthz_from(gw, "127.0.13.1").startswith(b"HTTP/1.1 200")
        # an idle socket is closed request_timeout after the accept, without a word (the
        # probe's sockets stayed for keepalive_timeout, then came back)
        assert idle[0].recv(4096) == b""
    finally:
        for sock in idle:
            with contextlib.suppress(OSError):
                sock.close()
        gw.stop()


def audit_events(home: Path, action: str) -> list[dict[str, object]]:
    path = home / "data" / "logs" / "audit.log"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["event.action"] == action]


def test_5_audit_names_tokens_by_id_and_masks_webhook_keys(gateway: GatewayProcess) -> None:
    listed = json.loads(run_cli(gateway.home, "token", "list", "--json").stdout)["tokens"]
    token_id = listed[0]["id"]  # the one token the fixture made
    assert httpx.post(f"{gateway.url}/api/v1/login",
                      json={"token": gateway.token}).status_code == 200
    login = audit_events(gateway.home, "console.login")[-1]
    assert (login["user.name"], login["user.id"]) == ("token:dashboard", token_id)

    hook = "https://hooks.example/notify?key=WEBHOOK-SECRET-1234&room=ops"
    text = httpx.get(f"{gateway.url}/api/v1/config", headers=gateway.headers).json()["text"]
    text += f"alerts:\n  notify:\n    - {{type: webhook, url: \"{hook}\"}}\n"
    applied = httpx.post(f"{gateway.url}/api/v1/config", json={"text": text},
                         headers=gateway.headers, timeout=30).json()
    assert applied["applied"], applied
    edited = audit_events(gateway.home, "config.edited")[-1]
    assert (edited["user.name"], edited["user.id"]) == ("token:dashboard", token_id)
    audit_text = (gateway.home / "data" / "logs" / "audit.log").read_text(encoding="utf-8")
    assert "WEBHOOK-SECRET-1234" not in audit_text
    assert "https://hooks.example/notify?key=***&room=***" in audit_text  # still readable


def test_5_the_recorded_model_input_masks_quoted_secrets(gateway: GatewayProcess) -> None:
    sent = gateway.post('my config has api_key: "sk-live-0123456789abcdef", is that ok?')
    assert sent.status_code == 200
    shown = httpx.get(f"{gateway.url}/api/v1/messages/{sent.json()['id']}",
                      headers=gateway.headers).json()
    turns = shown["model_input"]["given"]  # recorded as JSON, masked over that JSON text
    assert turns[-1]["content"] == 'my config has api_key: "***", is that ok?'
    assert "sk-live-0123456789abcdef" not in json.dumps(shown["model_input"])


def test_5_config_check_never_echoes_a_value_from_the_environment(
        home: Path, fake_model: FakeModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = start_im(home, fake_model, monkeypatch)
    try:
        text = (home / "config.yaml").read_text(encoding="utf-8") + (
            'gateway:\n  request_timeout: "${IM_PLATFORM_TOKEN}"\n'
            'auth:\n  rate_limit:\n    per_ip: "${IM_PLATFORM_TOKEN}"\n')
        checked = httpx.post(f"{gw.url}/api/v1/config/check", json={"text": text},
                             headers=gw.headers, timeout=30)
        problems = [p["message"] for p in checked.json()["problems"]]
        assert len(problems) == 2, problems
        assert all("'${IM_PLATFORM_TOKEN}'" in p for p in problems), problems
        assert BOT not in checked.text and "probe-bot" not in checked.text
    finally:
        gw.stop()


def test_5_a_replay_id_is_tied_to_its_sender_and_credential(
        home: Path, fake_model: FakeModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = start_im(home, fake_model, monkeypatch)
    try:
        assert im_post(gw, "alice", "alice's private plan", "p-1").json()[
            "reply"] == "echo: alice's private plan"
        bob = im_post(gw, "bob", "bob's question", "p-1")  # alice's platform id, reused
        assert bob.json()["reply"] == "echo: bob's question"
        assert im_post(gw, "alice", "resent", "p-1").json()[
            "reply"] == "echo: alice's private plan"  # alice's own retry is still a replay

        second = new_token(home)  # another token of the same name ("dashboard")
        key = {"Idempotency-Key": "k-1"}
        assert gw.post("first token", headers=key).json()["reply"] == "echo: first token"
        other = gw.post("second token", headers={**key, "Authorization": f"Bearer {second}"})
        assert other.json()["reply"] == "echo: second token"
    finally:
        gw.stop()


def alias_bomb(levels: int = 6, width: int = 9) -> str:
    """The probe's "billion laughs": each level repeats the one before `width` times."""
    text = "a0: &a0 [" + ", ".join(['"lol"'] * width) + "]\n"
    for level in range(1, levels + 1):
        text += f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]\n"
    return text


def test_5_config_check_refuses_alias_bombs_and_deep_brackets(
        gateway: GatewayProcess) -> None:
    def check(text: str) -> list[dict[str, object]]:
        answer = httpx.post(f"{gateway.url}/api/v1/config/check", json={"text": text},
                            headers=gateway.headers, timeout=60)
        assert answer.status_code == 200, answer.text  # deep brackets were a 500
        return list(answer.json()["problems"])

    bomb = check(alias_bomb())
    assert len(bomb) == 1 and bomb[0]["line"] == 5, bomb  # where it passes the limit
    assert "aliases (*name) expand to more than" in str(bomb[0]["message"])
    deep = check("gateway: " + "[" * 5000 + "]" * 5000 + "\n")
    assert len(deep) == 1 and "nested deeper than" in str(deep[0]["message"]), deep
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200
    (gateway.home / "config.yaml").write_text(alias_bomb(), encoding="utf-8")
    doctor = run_cli(gateway.home, "doctor")  # the same check wherever config.yaml is read
    assert "aliases (*name) expand" in doctor.stdout + doctor.stderr


def test_5_only_the_gateways_own_names_are_answered(gateway: GatewayProcess) -> None:
    def get(path: str, host: str) -> httpx.Response:
        return httpx.get(f"{gateway.url}{path}", headers={"Host": host}, timeout=10)

    for path in ("/metrics", "/api/v1/stats", "/healthz"):
        rebound = get(path, f"rebind.example:{gateway.port}")  # DNS rebinding's Host
        assert rebound.status_code == 403, path
        assert "gateway.allowed_hosts" in rebound.json()["error"]["message"]
        for own in (f"127.0.0.1:{gateway.port}", f"localhost:{gateway.port}", "[::1]"):
            assert get(path, own).status_code == 200, (path, own)
    config = gateway.home / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8") + "gateway:\n  allowed_hosts: "
                      "[moltbot.example]\n", encoding="utf-8")
    deadline = time.monotonic() + 20
    while get("/metrics", "moltbot.example").status_code != 200:  # taken on hot reload
        assert time.monotonic() < deadline, gateway.log()[-2000:]
        time.sleep(0.1)
    assert get("/metrics", "rebind.example").status_code == 403


def test_5_logout_ends_the_session_token(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as browser:
        assert browser.post("/api/v1/login", json={"token": gateway.token}).status_code == 200
        session = browser.cookies["moltbot_token"]
        assert session != gateway.token  # the cookie holds a session token of its own
        assert browser.get("/api/v1/whoami").json()["principal"] == "token:console"
        assert browser.post("/api/v1/logout", json={}).status_code == 200
    stolen = httpx.get(f"{gateway.url}/api/v1/whoami", cookies={"moltbot_token": session})
    assert stolen.status_code == 401  # a copy of the cookie no longer works
    assert httpx.get(f"{gateway.url}/api/v1/skills", timeout=10,
                     headers={"Authorization": f"Bearer {session}"}).status_code == 401
    assert gateway.post("the owner's own token still works").status_code == 200


def test_5_the_cookie_is_secure_behind_a_trusted_tls_proxy(
        home: Path, fake_model: FakeModelServer) -> None:
    write_config(home, {**model_config(fake_model.url),
                        "auth": {"trusted_proxies": ["127.0.0.1/32"]},
                        "console": {"allow_ips": ["127.0.0.0/8", "198.51.100.0/24"]}})
    gw = GatewayProcess(home, free_port()).start()
    try:
        def cookie(source: str, proto: str) -> str:
            with httpx.Client(transport=httpx.HTTPTransport(local_address=source)) as client:
                login = client.post(f"{gw.url}/api/v1/login", json={"token": gw.token},
                                    headers={"X-Forwarded-Proto": proto,
                                             "X-Forwarded-For": "198.51.100.7"}, timeout=10)
            assert login.status_code == 200, login.text
            return login.headers["set-cookie"].lower()

        assert "; secure" in cookie("127.0.0.1", "https")  # nginx ended TLS
        assert "; secure" not in cookie("127.0.0.1", "http")
        assert "; secure" not in cookie("127.0.0.2", "https")  # not a proxy: just a header
    finally:
        gw.stop()


ENV_SKILL = '''
import os
from moltbot_sdk import Skill, context


class EnvProbe(Skill):
    @context.handle(intent="envprobe", command="envprobe")
    def show(self, msg):
        return {"reply": " ".join(sorted(os.environ))
                + " | " + os.environ.get("WEATHER_KEY", "-")}
'''


def test_5_python_skills_get_only_the_environment_config_grants(
        home: Path, fake_model: FakeModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_MODEL_API_KEY", "sk-never-for-skills")  # a ${ENV} secret
    monkeypatch.setenv("PROBE_WEATHER", "granted-weather-key")
    write_config(home, {**model_config(fake_model.url, api_key="${PROBE_MODEL_API_KEY}"),
                        "skills": {"env": {"WEATHER_KEY": "${PROBE_WEATHER}"}}})
    (home / "skills").mkdir(parents=True, exist_ok=True)
    (home / "skills" / "envprobe.py").write_text(ENV_SKILL, encoding="utf-8")
    gw = GatewayProcess(home, free_port()).start()
    try:
        reply = gw.post("/envprobe").json()["reply"]
        names, _, weather = reply.partition(" | ")
        assert weather == "granted-weather-key"
        assert "PROBE_MODEL_API_KEY" not in names.split() and "sk-never" not in reply
        assert "PROBE_WEATHER" not in names.split()  # only the name config gave it
        assert {"PATH", "MOLTBOT_HOME"} <= set(names.split())
    finally:
        gw.stop()


def test_5_wrong_login_codes_are_counted_by_the_lockout(gateway: GatewayProcess) -> None:
    page = {"Origin": gateway.url}  # the console's own page posts the code from the link
    codes = [httpx.post(f"{gateway.url}/api/v1/login", json={"code": f"wrong-{i}"},
                        headers=page, timeout=10) for i in range(10)]
    assert [c.status_code for c in codes] == [401] * 9 + [429]
    assert "sign-in code" in codes[0].json()["error"]["message"]
    assert "auth.lockout" in codes[-1].json()["error"]["message"]
    good = httpx.post(f"{gateway.url}/api/v1/login/code", headers=gateway.headers,
                      timeout=10).json()["code"]
    late = httpx.post(f"{gateway.url}/api/v1/login", json={"code": good}, headers=page,
                      timeout=10)
    assert late.status_code == 429  # a locked-out browser gets no session, good code or not
    listed = json.loads(run_cli(gateway.home, "token", "list", "--json").stdout)["tokens"]
    assert [t["name"] for t in listed] == ["dashboard"]  # and none lingers in the store
    assert gateway.post("the owner's programs are not locked out").status_code == 200
