"""One-time sign-in codes (gateway/api/login_codes.py): issued only to a bearer token, good
once and for a minute, kept only as hashes."""

from __future__ import annotations

import httpx

from gateway.api.login_codes import MAX_OUTSTANDING, LoginCodes
from tests.conftest import GatewayProcess


def test_a_code_needs_a_bearer_token_and_works_once(gateway: GatewayProcess) -> None:
    url = f"{gateway.url}/api/v1/login/code"
    assert httpx.post(url).status_code == 401
    browser = httpx.post(f"{gateway.url}/api/v1/login", json={"token": gateway.token})
    cookie_only = httpx.post(url, cookies=browser.cookies, json={})
    assert cookie_only.status_code == 401  # a signed-in page cannot mint codes
    issued = httpx.post(url, headers=gateway.headers)
    assert issued.status_code == 200 and issued.json()["expires_in"] == 60
    code = issued.json()["code"]
    assert gateway.token not in code
    first = httpx.post(f"{gateway.url}/api/v1/login", json={"code": code})
    assert first.status_code == 200 and first.cookies["moltbot_token"] != gateway.token
    second = httpx.post(f"{gateway.url}/api/v1/login", json={"code": code})
    assert second.status_code == 401
    assert "open the console from the tray again" in second.json()["error"]["message"]
    assert httpx.post(f"{gateway.url}/api/v1/login", json={"code": "x" * 32}).status_code == 401


def test_codes_expire_and_are_kept_hashed() -> None:
    now = [1000.0]
    codes = LoginCodes(ttl=60, clock=lambda: now[0])
    late, early = codes.issue("token:tray"), codes.issue("token:tray")
    assert late not in repr(codes._codes)  # only hashes are held
    assert codes.redeem(early) == "token:tray"
    now[0] += 61
    assert codes.redeem(late) is None


def test_outstanding_codes_are_bounded() -> None:
    codes = LoginCodes()
    first = codes.issue("token:tray")
    newest = [codes.issue("token:tray") for _ in range(MAX_OUTSTANDING)]
    assert codes.redeem(first) is None  # the oldest made room
    assert codes.redeem(newest[-1]) == "token:tray"
