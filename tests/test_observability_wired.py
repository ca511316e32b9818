"""Metrics, stats and `moltbot top` from the real gateway process, after real messages: the
pipeline, the model pool and the WebSocket channel report into them."""

from __future__ import annotations

import json

import httpx
import websocket

from tests.conftest import GatewayProcess, run_cli


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_messages_model_calls_tokens_and_connections_are_counted(
        gateway: GatewayProcess) -> None:
    assert gateway.post("count me").status_code == 200
    ws = websocket.create_connection(f"ws://127.0.0.1:{gateway.port}/ws", timeout=30,
                                     header=[f"Authorization: Bearer {gateway.token}"])
    try:
        text = httpx.get(f"{gateway.url}/metrics").text  # loopback: no token needed
        assert metric(text, "moltbot_messages_total", channel="http", route="chat") == 1
        assert metric(text, "moltbot_model_calls_total", model="llama2") == 1
        assert metric(text, "moltbot_prompt_tokens_total", model="llama2", channel="http") > 0
        assert metric(text, "moltbot_connections", channel="websocket") == 1
        assert "moltbot_message_duration_seconds_bucket" in text
    finally:
        ws.close()
    stats = httpx.get(f"{gateway.url}/api/v1/stats?window=60").json()
    assert stats and json.dumps(stats)
    top = run_cli(gateway.home, "top", "--once", "--port", str(gateway.port),
                  "--token", gateway.token)
    assert top.returncode == 0 and "llama2" in top.stdout


def test_metrics_from_elsewhere_need_a_token(gateway: GatewayProcess) -> None:
    forwarded = httpx.get(f"{gateway.url}/metrics", headers={"X-Forwarded-For": "6.6.6.6"})
    assert forwarded.status_code == 401  # through a proxy it is not "this machine"
    with_token = httpx.get(f"{gateway.url}/metrics", headers={**gateway.headers,
                                                              "X-Forwarded-For": "6.6.6.6"})
    assert with_token.status_code == 200  # a token passes the console's chain (and the
    # untrusted X-Forwarded-For changes nothing: the peer is still this machine)
    bad = httpx.get(f"{gateway.url}/metrics", headers={"Authorization": "Bearer nope",
                                                       "X-Forwarded-For": "6.6.6.6"})
    assert bad.status_code == 401
