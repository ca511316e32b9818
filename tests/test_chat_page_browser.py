"""The chat page in real headless Chromium: sign in from the link, talk over /ws, start fresh."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import GatewayProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run must apt-get install chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def console_page(browser: object, gw: GatewayProcess, page_name: str) -> Iterator[Any]:
    """A console page in Chromium (1280x900, English), signed in with the gateway's token;
    a script error on it fails the test."""
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{gw.url}/#token={gw.token}")
        expect(page.locator("#shell")).to_be_visible()
        page.click(f"nav a[data-page={page_name}]")
        yield page
    finally:
        context.close()
    assert not errors, errors


def wait_for_cookie(context: Any, name: str, deadline_s: float = 5.0) -> Any:
    """The browser context's cookie `name`, once its cookie jar holds it."""
    deadline = time.monotonic() + deadline_s
    while True:
        found = [c for c in context.cookies() if c["name"] == name]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no {name} cookie in the browser"
        time.sleep(0.05)


def test_sign_in_link_then_chat(browser: object, gateway: GatewayProcess) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{gateway.url}/chat#token={gateway.token}")
    expect(page.locator("#composer")).to_be_visible()
    assert "token" not in page.url  # the fragment is wiped from the address bar
    # Chromium keeps cookies in another process: the jar may answer a moment after the page
    # already sent the cookie (playwright#2310)
    cookie = wait_for_cookie(context, "moltbot_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    expect(page.locator("#status")).to_have_text("connected")

    page.fill("#text", "hello from the browser")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.bot").last).to_contain_text("echo: hello from the browser")
    expect(page.locator(".msg.bot small").last).to_contain_text("msg_id m")

    page.click("#reset")
    expect(page.locator(".msg.bot").last).to_contain_text("Started a fresh conversation.")
    context.close()


def test_a_bad_token_is_refused_with_the_fix(browser: object, gateway: GatewayProcess) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page()
    page.goto(f"{gateway.url}/chat")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", "mb_not_a_real_token")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_contain_text("dashboard --token-gen")
    page.close()
