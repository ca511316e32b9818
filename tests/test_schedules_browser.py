"""The console's Schedules page in Chromium: a reminder set in chat is listed with its next
run in the gateway's zone, and Cancel takes it away (and it is never sent)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_chat_page_browser import (  # noqa: F401  (browser: the shared Chromium fixture)
    browser,
    console_page,
)
from tests.test_schedules_gateway import START, Rig, running_rig
from tests.test_skills_gateway import wait_until

OUTPUT = Path(__file__).parent / "output"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with running_rig(tmp_path / "ai-gateway") as made:
        yield made


def test_the_schedules_page_lists_a_reminder_and_cancels_it(
        browser: object, rig: Rig) -> None:  # noqa: F811
    from playwright.sync_api import expect

    assert rig.gw is not None
    rig.say("/remind 9:00 call mom")
    reminder = rig.listing()["schedules"][0]

    with console_page(browser, rig.gw, "schedules") as page:
        row = page.locator(f"#sc-list tr[data-id='{reminder['id']}']")
        expect(row).to_contain_text("Mon 2026-12-07 09:00")
        expect(row).to_contain_text("enterprise_im:dave")
        expect(row).to_contain_text("enterprise_im · dave")
        expect(row.locator(".badge")).to_have_text("waiting")
        expect(page.locator("#sc-zone")).to_have_text("Times in Asia/Shanghai")
        OUTPUT.mkdir(exist_ok=True)
        page.screenshot(path=str(OUTPUT / "console-schedules.png"), full_page=True)

        row.get_by_role("button", name="Cancel").click()
        expect(page.locator("#sc-note")).to_contain_text(f"Cancelled {reminder['id']}")
        expect(row).to_have_count(0)
        page.check("#sc-all")
        expect(row.locator(".badge")).to_have_text("cancelled")
    sent_before = len(rig.platform.replies)
    rig.set_time(START + 3600)  # long past 09:00: nothing comes
    assert len(rig.platform.replies) == sent_before
    assert wait_until(lambda: rig.listing(everything=True)["schedules"][0]["state"]
                      == "cancelled")
