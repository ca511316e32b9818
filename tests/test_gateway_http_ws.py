"""The real gateway process over HTTP and WebSocket, talking to the fake model with real clients."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import httpx
import pytest
import websocket

from tests.conftest import GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer


def ws_connect(gw: GatewayProcess) -> websocket.WebSocket:
    return websocket.create_connection(f"ws://127.0.0.1:{gw.port}/ws", timeout=30,
                                       header=[f"Authorization: Bearer {gw.token}"])


def ws_exchange(ws: websocket.WebSocket, frame: dict[str, Any]) -> list[dict[str, Any]]:
    """Send one message frame; return every frame up to its final reply or error."""
    ws.send(json.dumps(frame))
    frames = []
    while True:
        got = json.loads(ws.recv())
        frames.append(got)
        if got["type"] in ("reply", "error"):
            return frames


def last_user_messages(fake: FakeModelServer) -> list[str]:
    body = fake.requests[-1]["body"]
    return [m["content"] for m in body["messages"] if m["role"] in ("user", "assistant")]


def test_http_message_gets_reply_and_is_traceable(gateway: GatewayProcess,
                                                  fake_model: FakeModelServer) -> None:
    r = gateway.post("hello there")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reply"] == "echo: hello there"
    assert body["id"].startswith("m") and body["session"].startswith("s")
    assert fake_model.requests[-1]["body"]["options"]["num_predict"] == 64

    trace = run_cli(gateway.home, "trace", body["id"])
    assert trace.returncode == 0, trace.stderr
    steps = [line.split()[0] for line in trace.stdout.splitlines()[1:]]
    assert steps == ["guard", "store", "queue", "session", "route", "knowledge", "memory",
                     "context", "model"]
    assert f"via {fake_model.url}" in trace.stdout
    access = gateway.home / "data" / "logs" / "access.log"  # gateway.log's line: debug only
    until = time.monotonic() + 10  # written by the log thread, just after the reply
    while f"message {body['id']} ok" not in access.read_text() and time.monotonic() < until:
        time.sleep(0.05)
    assert f"message {body['id']} ok" in access.read_text()
    api = f"{gateway.url}/api/v1/messages/{body['id']}/trace"
    assert httpx.get(api).status_code == 401
    over_http = httpx.get(api, headers=gateway.headers).json()
    assert [s["step"] for s in over_http["spans"]] == steps and over_http["status"] == "answered"


def test_context_survives_a_restart(gateway: GatewayProcess, fake_model: FakeModelServer) -> None:
    first = gateway.post("my name is Ada", chat="restart").json()
    gateway.stop()
    gateway.start()
    second = gateway.post("what is my name?", chat="restart").json()
    assert second["session"] == first["session"]
    assert last_user_messages(fake_model) == ["my name is Ada", "echo: my name is Ada",
                                              "what is my name?"]
    ws = ws_connect(gateway)
    try:
        frames = ws_exchange(ws, {"type": "message", "id": "w1", "text": "again?",
                                  "chat": "restart"})
    finally:
        ws.close()
    assert frames[-1]["type"] == "reply"  # a ws chat is its own session: (channel, chat)
    assert last_user_messages(fake_model) == ["again?"]


def test_reset_starts_a_fresh_session(gateway: GatewayProcess,
                                      fake_model: FakeModelServer) -> None:
    first = gateway.post("remember 42", chat="r").json()
    reset = gateway.post("/reset", chat="r").json()
    assert reset["reply"] == "Started a fresh conversation."
    assert reset["session"] != first["session"]
    calls = fake_model.calls
    after = gateway.post("what number?", chat="r").json()
    assert after["session"] == reset["session"]
    assert fake_model.calls == calls + 1
    assert last_user_messages(fake_model) == ["what number?"]


def test_websocket_streams_deltas_then_reply(gateway: GatewayProcess) -> None:
    ws = ws_connect(gateway)
    try:
        frames = ws_exchange(ws, {"type": "message", "id": "a1", "text": "stream me",
                                  "chat": "w"})
        deltas = [f["text"] for f in frames if f["type"] == "reply.delta"]
        final = frames[-1]
        assert len(deltas) >= 2 and "".join(deltas) == "echo: stream me"
        assert final["type"] == "reply" and final["id"] == "a1"
        assert final["text"] == "echo: stream me" and final["msg_id"].startswith("m")

        ws.send("not json")
        bad = json.loads(ws.recv())
        assert bad["type"] == "error" and bad["code"] == "bad_request"
        ws.send(json.dumps({"type": "message", "id": "a2", "text": ""}))
        empty = json.loads(ws.recv())
        assert empty["code"] == "bad_request" and "text" in empty["message"]
        again = ws_exchange(ws, {"type": "message", "id": "a3", "text": "still alive",
                                 "chat": "w"})
        assert again[-1]["text"] == "echo: still alive"
    finally:
        ws.close()


def test_websocket_auth_by_first_frame_and_refusal(gateway: GatewayProcess) -> None:
    ws = websocket.create_connection(f"ws://127.0.0.1:{gateway.port}/ws", timeout=10)
    ws.send(json.dumps({"type": "auth", "token": gateway.token}))
    assert json.loads(ws.recv())["type"] == "auth.ok"
    assert ws_exchange(ws, {"type": "message", "id": "x", "text": "hi"})[-1]["type"] == "reply"
    ws.close()

    ws = websocket.create_connection(f"ws://127.0.0.1:{gateway.port}/ws", timeout=10)
    ws.send(json.dumps({"type": "auth", "token": "mb_wrong"}))
    refusal = json.loads(ws.recv())
    assert refusal["code"] == "unauthorized"
    ws.close()


def test_a_bad_header_token_is_refused_before_the_upgrade(gateway: GatewayProcess) -> None:
    for _ in range(5):  # repeatedly: a refused handshake must leave the gateway unharmed
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(f"ws://127.0.0.1:{gateway.port}/ws", timeout=10,
                                        header=["Authorization: Bearer nope"])
        assert refused.value.status_code == 401
        assert b'"unauthorized"' in refused.value.resp_body
    assert gateway.post("still serving").status_code == 200


def test_retry_with_same_id_is_answered_once(gateway: GatewayProcess,
                                             fake_model: FakeModelServer) -> None:
    key = {"Idempotency-Key": "retry-1"}
    first = gateway.post("count me once", chat="idem", headers=key).json()
    calls = fake_model.calls
    second = gateway.post("count me once", chat="idem", headers=key).json()
    assert second == first
    assert fake_model.calls == calls

    ws = ws_connect(gateway)
    try:
        one = ws_exchange(ws, {"type": "message", "id": "dup", "text": "ws once"})[-1]
        calls = fake_model.calls
        two = ws_exchange(ws, {"type": "message", "id": "dup", "text": "ws once"})[-1]
    finally:
        ws.close()
    assert two["msg_id"] == one["msg_id"] and fake_model.calls == calls


def test_retry_while_first_is_running_waits_for_it(gateway: GatewayProcess,
                                                   fake_model: FakeModelServer) -> None:
    fake_model.delay_first = 2.0
    key = {"Idempotency-Key": "slow-1"}
    results: list[httpx.Response] = []
    first = threading.Thread(target=lambda: results.append(
        gateway.post("slow one", chat="s", headers=key)))
    first.start()
    assert fake_model.wait_for(lambda: fake_model.calls >= 1, 10)
    second = gateway.post("slow one", chat="s", headers=key)
    first.join(30)
    assert second.json() == results[0].json()
    assert fake_model.calls == 1


def test_one_chat_is_answered_in_order(gateway: GatewayProcess,
                                       fake_model: FakeModelServer) -> None:
    fake_model.delay_first = 0.3
    ws = ws_connect(gateway)
    try:
        ws.send(json.dumps({"type": "message", "id": "1", "text": "first", "chat": "o"}))
        ws.send(json.dumps({"type": "message", "id": "2", "text": "second", "chat": "o"}))
        finals = []
        while len(finals) < 2:
            frame = json.loads(ws.recv())
            if frame["type"] in ("reply", "error"):
                finals.append(frame)
    finally:
        ws.close()
    assert [f["id"] for f in finals] == ["1", "2"]
    second_request = fake_model.requests[-1]["body"]["messages"]
    assert [m["content"] for m in second_request[1:]] == ["first", "echo: first", "second"]


def test_disconnect_cancels_the_model_call(gateway: GatewayProcess,
                                           fake_model: FakeModelServer) -> None:
    fake_model.delay_chunk = 0.5
    ws = ws_connect(gateway)
    ws.send(json.dumps({"type": "message", "id": "c", "text": "a long answer please"}))
    assert json.loads(ws.recv())["type"] == "reply.delta"
    ws.close()
    assert fake_model.wait_for(lambda: fake_model.disconnects >= 1, 10)
    assert gateway.post("after cancel").status_code == 200


def test_bad_requests_get_clear_json_errors(gateway: GatewayProcess) -> None:
    url = f"{gateway.url}/api/v1/messages"
    no_auth = httpx.post(url, json={"text": "hi"})
    assert no_auth.status_code == 401
    assert "dashboard --token-gen" in no_auth.json()["error"]["message"]
    bad_token = httpx.post(url, json={"text": "hi"}, headers={"Authorization": "Bearer nope"})
    assert bad_token.status_code == 401
    not_json = httpx.post(url, content=b"{oops", headers={**gateway.headers,
                                                          "Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "bad_request"
    no_text = httpx.post(url, json={"chat": "x"}, headers=gateway.headers)
    assert no_text.status_code == 400 and '"text"' in no_text.json()["error"]["message"]
    huge = httpx.post(url, json={"text": "x" * (2 * 1024 * 1024)}, headers=gateway.headers)
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"
    missing = httpx.get(f"{gateway.url}/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert gateway.post("still serving").status_code == 200


def test_text_that_cannot_be_stored_and_deep_json_are_refused_on_http_and_ws(
        gateway: GatewayProcess) -> None:
    url = f"{gateway.url}/api/v1/messages"
    headers = {**gateway.headers, "Content-Type": "application/json"}
    surrogate = b'{"text": "hi \\ud800 there", "chat": "c"}'  # valid JSON, not UTF-8
    deep = b'{"text": "x", "chat": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for body, expected in ((surrogate, "invalid Unicode"), (deep, "nested too deeply")):
        r = httpx.post(url, content=body, headers=headers)
        assert r.status_code == 400 and expected in r.json()["error"]["message"]
    bad_sender = httpx.post(url, content=b'{"text": "ok", "sender": "\\udfff"}',
                            headers=headers)
    assert bad_sender.status_code == 400 and '"sender"' in bad_sender.json()["error"]["message"]
    unauthenticated = httpx.post(url, content=surrogate,
                                 headers={"Content-Type": "application/json"})
    assert unauthenticated.status_code == 401  # the guard chain answers before the body does
    ws = ws_connect(gateway)
    try:
        for body, expected in ((surrogate.replace(b'{"text"', b'{"type": "message", "id": '
                                                  b'"1", "text"'), "invalid Unicode"),
                               (deep, "nested too deeply")):
            ws.send(body.decode())
            frame = json.loads(ws.recv())
            assert frame["type"] == "error" and expected in frame["message"]
        assert ws_exchange(ws, {"type": "message", "id": "2", "text": "alive?"})[-1][
            "text"] == "echo: alive?"  # the connection lives on
    finally:
        ws.close()
    assert gateway.post("still serving").status_code == 200


def test_login_cookie_lets_the_chat_page_in(gateway: GatewayProcess) -> None:
    page = httpx.get(f"{gateway.url}/chat")
    assert page.status_code == 200 and "Moltbot" in page.text
    with httpx.Client(base_url=gateway.url) as client:
        assert client.get("/api/v1/whoami").status_code == 401
        assert client.post("/api/v1/login", json={"token": "bad"}).status_code == 401
        login = client.post("/api/v1/login", json={"token": gateway.token})
        assert login.status_code == 200
        assert "httponly" in login.headers["set-cookie"].lower()
        assert client.get("/api/v1/whoami").status_code == 200
        assert client.post("/api/v1/messages", json={"text": "via cookie"}).status_code == 200
        forged = client.post("/api/v1/messages", json={"text": "x"},
                             headers={"Origin": "http://evil.example"})
        assert forged.status_code == 403  # another site's page: refused at the door


def test_failover_to_the_live_endpoint(home: Any, fake_model: FakeModelServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    write_config(home, model_config(dead, fake_model.url))
    gw = GatewayProcess(home, free_port()).start()
    try:
        for i in range(3):
            r = gw.post(f"try {i}")
            assert r.status_code == 200 and r.json()["reply"] == f"echo: try {i}"
        trace = run_cli(home, "trace", r.json()["id"], "--json")
        model_span = next(s for s in json.loads(trace.stdout)["spans"] if s["step"] == "model")
        assert fake_model.url in model_span["detail"]
    finally:
        gw.stop()


def test_no_model_reachable_says_how_to_fix(home: Any) -> None:
    dead = f"http://owner:hunter2@127.0.0.1:{free_port()}"
    write_config(home, model_config(dead))
    gw = GatewayProcess(home, free_port()).start()
    try:
        r = gw.post("anyone there?")
        assert r.status_code == 503
        error = r.json()["error"]
        assert error["code"] == "model_unavailable"
        assert "ollama serve" in error["message"] and "models.llama2.endpoint" in error["message"]
        assert "127.0.0.1" not in r.text and "hunter2" not in r.text  # no URL to a sender
        trace = httpx.get(f"{gw.url}/api/v1/messages/{r.json()['id']}/trace",
                          headers=gw.headers).json()
        model_span = next(s for s in trace["spans"] if s["step"] == "model")
        assert "http://***@127.0.0.1" in model_span["detail"]  # the owner's trace names it
        assert "hunter2" not in model_span["detail"]
        assert httpx.get(f"{gw.url}/healthz").status_code == 200
    finally:
        gw.stop()


def test_connections_over_the_limit_get_503(home: Any, fake_model: FakeModelServer) -> None:
    config = model_config(fake_model.url)
    config["gateway"] = {"max_connections": 2}
    write_config(home, config)
    gw = GatewayProcess(home, free_port()).start()
    held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(2)]
    try:
        for s in held:  # make sure the server has accepted both
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert b"200 OK" in s.recv(4096)
        over = httpx.get(f"{gw.url}/healthz", timeout=10)
        assert over.status_code == 503
        assert "max_connections" in over.json()["error"]["message"]
    finally:
        for s in held:
            s.close()
        gw.stop()


def test_sigterm_finishes_the_reply_in_flight(gateway: GatewayProcess,
                                              fake_model: FakeModelServer) -> None:
    fake_model.delay_first = 1.0
    results: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: results.append(gateway.post("finish me")))
    sender.start()
    assert fake_model.wait_for(lambda: fake_model.calls >= 1, 10)
    assert gateway.stop() == 0
    sender.join(30)
    assert results[0].status_code == 200 and results[0].json()["reply"] == "echo: finish me"
    assert not (gateway.home / "data" / f"gateway-{gateway.port}.pid").exists()


def test_idle_keepalive_connections_are_closed(home: Any, fake_model: FakeModelServer) -> None:
    config = model_config(fake_model.url)
    config["gateway"] = {"keepalive_timeout": 1}
    write_config(home, config)
    gw = GatewayProcess(home, free_port()).start()
    try:
        with socket.create_connection(("127.0.0.1", gw.port)) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s.settimeout(30)
            answer = b""
            while not answer.endswith(b"}\n"):
                answer += s.recv(4096)
            assert b"200 OK" in answer
            assert s.recv(4096) == b""  # the server hung up on the idle connection
        ws = websocket.create_connection(f"ws://127.0.0.1:{gw.port}/ws", timeout=30,
                                         header=[f"Authorization: Bearer {gw.token}"])
        try:  # a WebSocket idle longer than keepalive_timeout stays open
            ws.ping()
            threading.Event().wait(1.5)
            assert ws_exchange(ws, {"type": "message", "id": "k", "text": "hi"})[-1]["type"] \
                == "reply"
        finally:
            ws.close()
    finally:
        gw.stop()


def test_a_flooding_websocket_client_is_told_to_wait(gateway: GatewayProcess,
                                                     fake_model: FakeModelServer) -> None:
    fake_model.delay_first = 3.0  # long enough that no reply frees a slot while frames arrive
    ws = ws_connect(gateway)
    try:
        for i in range(40):
            ws.send(json.dumps({"type": "message", "id": str(i), "text": f"m{i}",
                                "chat": f"flood-{i}"}))
        finals: dict[str, dict[str, Any]] = {}
        while len(finals) < 40:
            frame = json.loads(ws.recv())
            if frame["type"] in ("reply", "error"):
                finals[frame["id"]] = frame
    finally:
        ws.close()
    busy = [f for f in finals.values() if f.get("code") == "busy"]
    answered = [f for f in finals.values() if f["type"] == "reply"]
    assert len(busy) == 8 and len(answered) == 32
