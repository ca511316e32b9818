"""Issue 14's probe findings, each replayed against the real gateway process the way it was
found; every test here failed on the main branch before its fix."""

from __future__ import annotations

import json

import pytest
import websocket

from tests.conftest import GatewayProcess


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
