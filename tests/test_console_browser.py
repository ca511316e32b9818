"""The console in real headless Chromium against the real gateway: sign in from the link, see
a message in the live log filtered by a keyword, replay its trace, edit config.yaml and see it
take effect, chat with a streamed reply, switch language and theme. Each page's screenshot is
saved under tests/output/ for a person to look at."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import GatewayProcess
from tests.test_chat_page_browser import (
    browser,  # noqa: F401  (the shared Chromium fixture)
    wait_for_cookie,
)

OUTPUT = Path(__file__).parent / "output"


@pytest.fixture
def page(browser: object, gateway: GatewayProcess) -> Iterator[object]:  # noqa: F811
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    OUTPUT.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-US",
                                  color_scheme="light")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert not [e for e in errors if "Content Security Policy" in e or "Error" in e], errors


def shot(page: object, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")  # type: ignore[attr-defined]
    page.screenshot(path=str(OUTPUT / f"console-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_console_end_to_end(page: object, gateway: GatewayProcess) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(f"{gateway.url}/#token={gateway.token}")
    expect(page.locator("#shell")).to_be_visible()
    assert "token" not in page.url  # the fragment is wiped
    cookie = wait_for_cookie(page.context, "moltbot_token")
    assert cookie["httpOnly"]

    # chat: a streamed reply over /ws
    page.click("nav a[data-page=chat]")
    expect(page.locator("#chat-status")).to_have_text("connected")
    page.fill("#chat-text", "hello console zebra")
    page.keyboard.press("Enter")
    reply = page.locator(".bubble.bot").last
    expect(reply).to_contain_text("echo: hello console zebra")
    expect(reply.locator("small a")).to_contain_text("trace")
    msg_id = re.search(r"m[0-9a-f]+", reply.locator("small a").inner_text()).group(0)
    page.fill("#chat-text", "and a second turn")
    page.keyboard.press("Enter")
    expect(page.locator(".bubble.bot").last).to_contain_text("echo: and a second turn")
    shot(page, "chat")
    # a reload shows the conversation the model continues, from the store
    page.reload()
    expect(page.locator("#chat-continued")).to_be_visible()
    expect(page.locator(".bubble.me")).to_have_text(["hello console zebra", "and a second turn"])
    expect(page.locator(".bubble.bot").first).to_contain_text(msg_id)
    shot(page, "chat-reloaded")

    # logs: the live tail, filtered by a keyword, shows the next message as it arrives
    page.click("nav a[data-page=logs]")
    expect(page.locator("#log-status")).to_have_text("live")
    page.select_option("#log-source", "access")  # a line per message (gateway.log: debug)
    page.fill("#log-keyword", "message m")
    tail_id = gateway.post("second message for the tail", chat="tail").json()["id"]
    line = page.locator(".logline", has_text=f"message {tail_id} ok").last
    expect(line).to_be_visible()
    expect(page.locator(".logline", has_text="loaded")).to_have_count(0)  # filtered out
    shot(page, "logs")

    # trace replay: the message's waterfall and what the model was given, then its log lines
    page.goto(f"{gateway.url}/#/sessions/msg/{msg_id}")
    turn = page.locator(f"article.turn[data-msg-id={msg_id}]")
    expect(turn.locator(".wf-name", has_text=re.compile("^model$"))).to_be_visible()
    expect(turn.locator(".wf-name", has_text=re.compile("^guard$"))).to_be_visible()
    expect(turn.locator(".wf-detail", has_text="llama2 via")).to_be_visible()
    expect(turn.locator(".given .g.user").last).to_contain_text("hello console zebra")
    shot(page, "trace")
    turn.locator("a", has_text="log lines").click()
    expect(page.locator(".logline", has_text=msg_id).first).to_be_visible()
    page.click("nav a[data-page=sessions]")
    expect(page.locator("#ss-list button").first).to_be_visible()
    session_button = page.locator("#ss-list button", has_text="websocket").first
    expect(session_button).to_contain_text("2 messages")
    session_button.click()
    expect(page.locator("article.turn", has_text="hello console zebra")).to_be_visible()
    # replay message by message: each step opens that message's trace
    page.click("#ss-next")
    expect(page.locator("#ss-step")).to_have_text("1 / 2")
    first = page.locator("article.turn.current")
    expect(first).to_contain_text("hello console zebra")
    expect(first.locator(".wf-name", has_text=re.compile("^model$"))).to_be_visible()
    page.click("#ss-next")
    expect(page.locator("#ss-step")).to_have_text("2 / 2")
    second = page.locator("article.turn.current")
    expect(second).to_contain_text("and a second turn")
    # the second turn's model saw the first one: the context the replay shows says why
    expect(second.locator(".given .g.user").first).to_have_text(re.compile("hello console zebra"))
    expect(second.locator(".given .g.user").first).to_be_visible()
    expect(page.locator("#ss-next")).to_be_disabled()
    shot(page, "sessions")

    # "New conversation" sends /new: the page empties, and a reload shows nothing earlier
    page.click("nav a[data-page=chat]")
    expect(page.locator(".bubble.me")).to_have_count(2)
    page.click("#chat-reset")
    expect(page.locator("#chat-fresh")).to_be_visible()
    expect(page.locator(".bubble")).to_have_count(0)
    with page.expect_response(lambda r: "/api/v1/sessions/current" in r.url) as answer:
        page.reload()
    assert answer.value.json()["messages"] == []
    expect(page.locator("#chat-status")).to_have_text("connected")
    expect(page.locator("#chat-log .empty")).to_be_visible()
    expect(page.locator(".bubble")).to_have_count(0)

    # overview: live figures and token usage from the model's own counts
    page.click("nav a[data-page=overview]")
    expect(page.locator("#c-rate .uplot")).to_be_visible()
    expect(page.locator("#usage tbody tr").first).to_contain_text("llama2")
    shot(page, "overview")

    # config: a bad value is shown at its line; a good one applies and takes effect
    page.click("nav a[data-page=config]")
    editor = page.locator("#cfg-text")
    expect(editor).not_to_have_value("")
    original = editor.input_value()
    editor.fill(original + "\ngateway:\n  context_tokens: lots\n")
    page.click("#cfg-check")
    problem = page.locator(".problems li", has_text="context_tokens")
    line_no = len(original.split("\n")) + 2
    expect(problem).to_contain_text(f"line {line_no}")
    shot(page, "config-error")
    editor.fill(original + "\ngateway:\n  context_tokens: 1234\nchannels:\n  http:\n"
                "    enabled: false\n")
    page.click("#cfg-apply")
    expect(page.locator("#cfg-applied")).to_contain_text("Applied as version")
    expect(page.locator("#cfg-versions .turn")).to_have_count(2)  # the original and this one
    shot(page, "config")
    # it took effect without a restart: the HTTP channel is off, the overview says so
    assert gateway.post("is http off?").status_code == 503
    page.click("nav a[data-page=overview]")
    expect(page.locator("#channels tr[data-channel=http]")).to_contain_text("stopped")
    detail = page.locator("#channels tr[data-channel=http] .detail")
    expect(detail).to_have_text("channels.http.enabled is false")  # whole, on its own line
    expect(page.locator("#channels tr[data-channel=websocket]")).to_contain_text("running")
    # one click rolls back to the file as it was before the console's first edit
    page.click("nav a[data-page=config]")
    page.once("dialog", lambda d: d.accept())
    page.locator("#cfg-versions .turn", has_text="before the console").locator("button").click()
    expect(page.locator("#cfg-applied")).to_be_visible()
    expect(page.locator("#cfg-versions .turn")).to_have_count(3)
    assert "1234" not in editor.input_value()
    assert gateway.post("http is back").status_code == 200

    # skills and knowledge: try a question, save a knowledge file and see it load
    page.click("nav a[data-page=skills]")
    page.fill("#sk-path", "knowledge/console.md")
    page.fill("#sk-text", "# Opening hours\n\nThe zebra shop opens at nine.\n")
    page.click("#sk-save")
    expect(page.locator("#sk-result")).to_contain_text("Saved and loaded")
    page.fill("#sk-q", "when does the zebra shop open")
    page.keyboard.press("Enter")
    expect(page.locator("#sk-hits .turn").first).to_contain_text("nine")
    expect(page.locator("#sk-ranking")).to_have_text("bm25")  # how it searched: no embeddings
    shot(page, "skills")

    # language and theme switches
    page.click("#lang")
    expect(page.locator("nav a[data-page=logs]")).to_have_text(re.compile("日志"))
    expect(page.locator("#page-title")).to_have_text("技能与知识库")
    shot(page, "skills-zh")
    page.click("#theme")  # system -> light
    page.click("#theme")  # light -> dark
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.click("nav a[data-page=overview]")
    expect(page.locator("#c-rate .uplot")).to_be_visible()
    shot(page, "overview-dark-zh")

    # keyboard: the first Tab stop skips to the content; the sidebar is reachable and opens
    page.reload()
    expect(page.locator("#page-title")).to_have_text("概览")
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    logs_link = page.locator("nav a[data-page=logs]")
    for _ in range(10):
        page.keyboard.press("Tab")
        if logs_link.evaluate("el => el === document.activeElement"):
            break
    expect(logs_link).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#page-title")).to_have_text("日志")


def test_phone_layout_and_a_code_link(browser: object, gateway: GatewayProcess) -> None:  # noqa: F811
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    OUTPUT.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{gateway.url}/#code=not-a-real-code")  # refused: the sign-in form says why
    expect(page.locator("#signin")).to_be_visible()
    assert "code" not in page.url
    expect(page.locator("#signin-error")).not_to_be_empty()
    page.fill("#signin-token", gateway.token)
    page.keyboard.press("Enter")
    expect(page.locator("#page-title")).to_have_text("概览")
    expect(page.locator("#sidebar")).not_to_be_in_viewport()
    page.click("#menu")
    expect(page.locator("#sidebar")).to_be_in_viewport(ratio=1)  # slid fully in
    page.screenshot(path=str(OUTPUT / "console-phone-menu.png"))
    page.click("nav a[data-page=logs]")
    expect(page.locator("#log-status")).to_have_text("实时")
    expect(page.locator("#sidebar")).not_to_be_in_viewport()  # slid away again
    page.select_option("#log-source", "access")
    gateway.post("a line for the phone")
    expect(page.locator(".logline", has_text="message m").first).to_be_visible()
    page.screenshot(path=str(OUTPUT / "console-phone-logs.png"))
    context.close()

    # a one-time code (what the tray opens) signs a fresh browser in, once
    code = httpx.post(f"{gateway.url}/api/v1/login/code", headers=gateway.headers,
                      timeout=10).json()["code"]
    fresh = browser.new_context()
    tab = fresh.new_page()
    tab.goto(f"{gateway.url}/#code={code}")
    expect(tab.locator("#shell")).to_be_visible()
    assert "code" not in tab.url
    fresh.close()


def test_config_outcome_shows_beside_the_buttons(page: object, gateway: GatewayProcess) -> None:
    """A long config.yaml (about a hundred lines) in a 900 px window: Check's problems and
    Apply's result show right under the buttons, in view, and the editor scrolls to the bad
    line and marks it."""
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    path = gateway.home / "config.yaml"
    padding = "".join(f"# note {i}: a line a person wrote\n" for i in range(90))
    path.write_text(padding + path.read_text(encoding="utf-8"), encoding="utf-8")
    page.goto(f"{gateway.url}/#token={gateway.token}")
    page.click("nav a[data-page=config]")
    editor = page.locator("#cfg-text")
    expect(editor).to_have_value(re.compile("note 89"))
    original = editor.input_value()
    editor.fill(original + "gateway:\n  context_tokens: lots\n")
    bad_line = len(original.split("\n")) + 1
    page.click("#cfg-check")
    problem = page.locator("#cfg-result .problems li", has_text="context_tokens")
    expect(problem).to_contain_text(f"line {bad_line}")
    expect(problem).to_be_in_viewport()
    expect(page.locator(f".editor .mark[data-line='{bad_line}']")).to_be_in_viewport()
    expect(page.locator(".gutter .bad", has_text=str(bad_line))).to_be_in_viewport()
    shot(page, "config-long-error")

    editor.fill(original + "gateway:\n  context_tokens: 1234\n")
    page.click("#cfg-apply")
    expect(page.locator("#cfg-applied")).to_contain_text("Applied as version")
    expect(page.locator("#cfg-applied")).to_be_in_viewport()
    expect(page.locator(".editor .mark")).to_have_count(0)
