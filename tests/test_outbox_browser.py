"""The console's Outbox page in Chromium: a refused delivery shows failed with its reason,
Retry sends it, and the message's trace on the Sessions page lists its deliveries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import GatewayProcess
from tests.fakes.fake_im import FakeImPlatform
from tests.test_chat_page_browser import (  # noqa: F401  (the shared Chromium fixture)
    browser,
    console_page,
)
from tests.test_enterprise_im import im  # noqa: F401  (fixtures the gateway is built from)
from tests.test_outbox_gateway import delivery_in, platform, say, start  # noqa: F401

OUTPUT = Path(__file__).parent / "output"


def test_the_outbox_page_shows_a_failure_and_retries_it(
        browser: object, start: Callable[..., GatewayProcess],  # noqa: F811
        platform: FakeImPlatform) -> None:  # noqa: F811
    from playwright.sync_api import expect

    platform.answers = [(400, {})]
    gw = start()
    msg_id = say(gw, "hello there")
    failed = delivery_in(gw, msg_id, "failed")

    with console_page(browser, gw, "outbox") as page:
        row = page.locator(f"#ob-list tr[data-id='{failed['id']}']")
        expect(row.locator(".badge")).to_have_text("failed")
        expect(row).to_contain_text("refused: HTTP 400")
        expect(page.locator("#ob-counts")).to_have_text("failed 1")
        OUTPUT.mkdir(exist_ok=True)
        page.screenshot(path=str(OUTPUT / "console-outbox-failed.png"), full_page=True)

        row.get_by_role("button", name="Retry").click()
        expect(page.locator("#ob-note")).to_contain_text("Queued again")
        platform.wait_for(1)
        page.click("#ob-refresh")
        expect(row.locator(".badge")).to_have_text("sent")

        row.get_by_role("link", name="Trace").click()
        card = page.locator(f"article.turn[data-msg-id='{msg_id}']")
        deliveries = card.locator(".deliveries")
        expect(deliveries).to_contain_text(failed["id"])
        expect(deliveries).to_contain_text("refused: HTTP 400")
        expect(deliveries).to_contain_text("queued again")
        page.screenshot(path=str(OUTPUT / "console-outbox-trace.png"), full_page=True)
