"""Every console page at desktop (1280x900) and phone (390x844) size, in English and Chinese,
in real headless Chromium against the real gateway. Each page's screenshot is saved under
tests/output/ (console-layout-<size>-<lang>-<page>.png) for a person to look at, and a script in
the page fails the test on what a person would see as broken:

- text wider than its box (an element whose content is wider than it, outside the panes that
  scroll on purpose: the editors, the log, the chat, diffs), a placeholder longer than its
  field, a page wider than the window, and text that lies outside the window or on top of
  other text (the charts' axes are drawn on a canvas: the screenshots show those);
- i18n keys without a translation in the page's language (`i18n.js` records each one), a
  dictionary key shown raw, or, in Chinese, an English string of the dictionary still showing
  (text, placeholder, tooltip or label), e.g. after switching language on a page;
- any page error or console error (a CSP refusal included).

The Chinese pages are reached as a person does: the browser is English, the 中文 switch in the
top bar changes the language, and the pages are visited after it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import GatewayProcess
from tests.test_chat_page_browser import browser  # noqa: F401  (the shared Chromium fixture)

OUTPUT = Path(__file__).parent / "output"
SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}

# Runs in the page; returns a list of sentences, one per problem found.
CHECK = (Path(__file__).parent / "console_layout_check.js").read_text(encoding="utf-8")


class Visit:
    """One browser context at one size and language, signed in: go to a page, wait until it
    is drawn, save its screenshot and collect what the in-page check finds."""

    def __init__(self, page: object, gateway: GatewayProcess, size: str, lang: str) -> None:
        from playwright.sync_api import Page

        assert isinstance(page, Page)
        self.page = page
        self.gateway = gateway
        self.size = size
        self.lang = lang
        self.errors: list[str] = []
        self.problems: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, route: str, ready: Callable[[], None]) -> None:
        from playwright.sync_api import expect

        self.page.evaluate("(route) => { location.hash = route; }", route)
        expect(self.page.locator("#main")).to_have_attribute("data-page", route.split("/")[1])
        ready()

    def look(self, name: str) -> None:
        """The screenshot (the whole page), then the check; problems are kept, not raised, so
        one run names every page's."""
        self.page.evaluate("window.scrollTo(0, 0)")
        path = OUTPUT / f"console-layout-{self.size}-{self.lang}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        found = self.page.evaluate(CHECK)
        assert isinstance(found, list), found  # the check ran to its end
        self.problems += [f"{name}: {p}" for p in found]


@pytest.fixture
def seeded(gateway: GatewayProcess) -> GatewayProcess:
    """Traffic for every page to show: messages on two channels (charts, usage, sessions, logs)."""
    for text, chat in (("hello from a script", "script"), ("what are the opening hours?", "script"),
                       ("a message from another chat", "other")):
        assert gateway.post(text, chat=chat).status_code == 200
    return gateway


@pytest.fixture(params=[(size, lang) for size in SIZES for lang in ("en", "zh")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def visit(request: pytest.FixtureRequest, browser: object,  # noqa: F811
          seeded: GatewayProcess) -> Iterator[Visit]:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    OUTPUT.mkdir(exist_ok=True)
    size, lang = request.param
    phone = size == "phone"
    context = browser.new_context(viewport=SIZES[size], is_mobile=phone, has_touch=phone,
                                  locale="en-US", color_scheme="light")
    page = context.new_page()
    v = Visit(page, seeded, size, lang)
    page.goto(f"{seeded.url}/#token={seeded.token}")
    expect(page.locator("#shell")).to_be_visible()
    expect(page.locator("#page-title")).to_have_text("Overview")
    yield v
    context.close()


def test_every_page_fits_and_is_translated(visit: Visit) -> None:
    from playwright.sync_api import expect

    page, zh = visit.page, visit.lang == "zh"

    # chat first: a turn over the WebSocket, then a reload shows it again from the store
    visit.open("#/chat", lambda: expect(page.locator("#chat-status.live")).to_be_visible())
    page.fill("#chat-text", "hello, what can you do?")
    page.keyboard.press("Enter")
    expect(page.locator(".bubble.bot small a")).to_have_count(1)
    page.reload()
    expect(page.locator("#chat-continued")).to_be_visible()
    if zh:  # switched on a page, as a person does: what is drawn already must follow
        page.click("#lang")
        expect(page.locator("#page-title")).to_have_text("对话")
        expect(page.locator("#chat-continued")).to_be_visible()
    expect(page.locator("#chat-status.live")).to_be_visible()
    visit.look("chat")

    visit.open("#/overview", lambda: (
        expect(page.locator("#c-rate .uplot")).to_be_visible(),
        expect(page.locator("#usage tbody tr").first).to_be_visible(),
        expect(page.locator("#channels tbody tr").first).to_be_visible()))
    visit.look("overview")

    visit.open("#/logs", lambda: (expect(page.locator("#log-status.live")).to_be_visible(),
                                  expect(page.locator(".logline").first).to_be_visible()))
    visit.look("logs")

    visit.open("#/sessions", lambda: expect(page.locator("#ss-list button").first).to_be_visible())
    page.locator("#ss-list button", has_text="script").click()
    expect(page.locator("#ss-view article.turn")).to_have_count(2)
    page.click("#ss-next")
    expect(page.locator("article.turn.current .waterfall")).to_be_visible()
    visit.look("sessions")

    visit.open("#/outbox", lambda: expect(page.locator("#ob-list .empty")).to_be_visible())
    visit.look("outbox")

    visit.open("#/schedules", lambda: expect(page.locator("#sc-list .empty")).to_be_visible())
    visit.look("schedules")

    visit.open("#/config", lambda: expect(page.locator("#cfg-text")).not_to_have_value(""))
    editor = page.locator("#cfg-text")
    editor.fill(editor.input_value() + "\ngateway:\n  context_tokens: lots\n")
    page.click("#cfg-check")
    expect(page.locator("#cfg-result .problems li")).to_have_count(1)
    expect(page.locator("#cfg-result .problems li")).to_be_in_viewport()
    visit.look("config")

    visit.open("#/skills", lambda: expect(page.locator("#sk-skills table")).to_be_visible())
    visit.look("skills")

    # who is signed in, and the way out, on every size (on a phone: in the menu)
    if visit.size == "phone":
        page.click("#menu")
        expect(page.locator("#sidebar")).to_be_in_viewport(ratio=1)
    expect(page.locator("#whoami")).to_have_text(re.compile("已登录" if zh else "Signed in as"))
    signout = page.get_by_role("button", name="退出登录" if zh else "Sign out")
    expect(signout).to_be_visible()
    expect(signout).to_be_in_viewport(ratio=1)
    if visit.size == "phone":
        visit.look("menu")

    assert not visit.errors, visit.errors
    assert not visit.problems, "\n".join(visit.problems)
