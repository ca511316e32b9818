"""The browser tool against a local site (tests/fakes/web_pages.py) with the real Chromium: it
reads pages, fills and submits forms, saves screenshots and downloads under the cap, and every
way out of the allowed hosts is refused: the first URL, a redirect, a sub-request by name or
by address, file:/data: URLs, a download over tools.max_bytes, a page that never loads.

One browser host for the module (a Chromium start costs seconds), inside bubblewrap where the
machine has it, as the model gets it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from gateway.tools.base import ToolError, ToolRefused
from gateway.tools.browser import BrowserHost, BrowserTool
from gateway.tools.sandbox import find_sandbox
from tests.fakes.web_pages import Site, running


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    yield from running()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser") / "ai-gateway"
    root.mkdir()
    (root / "config.yaml").write_text("secret: do not show\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def host(workspace: Path) -> Iterator[BrowserHost]:
    browser = BrowserHost(workspace, sandbox=find_sandbox().sandbox, pages=2)
    yield browser
    browser.stop()


@pytest.fixture(autouse=True)
def no_leftover_processes(host: BrowserHost) -> Iterator[None]:
    """The suite's check, minus the module's browser host and its Chromium."""
    yield
    kept = set()
    if host.pid is not None:
        kept = {host.pid, *(p.pid for p in psutil.Process(host.pid).children(recursive=True))}
    left = [p for p in psutil.Process().children(recursive=True)
            if p.pid not in kept and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"test left processes: {left}"


def tool(host: BrowserHost, workspace: Path, hosts: list[str], timeout: float = 10,
         max_bytes: int = 1024 * 1024) -> BrowserTool:
    made = BrowserTool(lambda request: host.call(request, made.wait(request)),
                       workspace=workspace, allowed_hosts=hosts, timeout=timeout,
                       max_bytes=max_bytes)
    return made


def steps(spans: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(s["step"], s["outcome"]) for s in spans]


def test_reads_a_page_as_text_and_markdown_and_saves_a_screenshot(
        host: BrowserHost, workspace: Path, site: Site) -> None:
    browser = tool(host, workspace, ["127.0.0.1"])
    text, spans = browser.traced({"url": site.url("/"), "screenshot": "front.png"})
    assert text.startswith(f"page: {site.url('/')} (HTTP 200)\ntitle: Moltbot test site\n"
                           "saved: files/browser/front.png\n\n")
    assert "Welcome" in text and "first item" in text and "hidden words" not in text
    shot = workspace / "files" / "browser" / "front.png"
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [s for s, _ in steps(spans)][-3:] == ["browser:open", "browser:screenshot",
                                                 "browser:read"]
    assert all(outcome == "ok" for _, outcome in steps(spans))

    markdown = browser.call({"url": site.url("/"), "read": "markdown"})
    assert "# Welcome" in markdown
    assert f"[form]({site.url('/form')})" in markdown  # links absolute, to follow them
    assert "- first item\n- second item" in markdown and "hidden words" not in markdown


def test_fills_and_submits_a_form(host: BrowserHost, workspace: Path, site: Site) -> None:
    browser = tool(host, workspace, ["127.0.0.1"])
    text, spans = browser.traced({"url": site.url("/form"), "steps": [
        {"action": "fill", "selector": "#name", "value": "Ada Lovelace"},
        {"action": "select", "selector": "#size", "value": "large"},
        {"action": "submit", "selector": "#order"},
        {"action": "screenshot", "value": "sent.png"}]})
    assert "title: Thanks" in text and "Received: name=Ada Lovelace, size=large" in text
    assert "refused" not in text  # the browser's own background traffic is switched off
    assert [s for s, _ in steps(spans)][1:] == [
        "browser:open", "browser:fill", "browser:select", "browser:submit",
        "browser:screenshot", "browser:read"]
    # a click does the same as a submit, and waiting for text that a script adds works
    clicked = browser.call({"url": site.url("/form"), "steps": [
        {"action": "fill", "selector": "#name", "value": "Bob"},
        {"action": "click", "selector": "#send"},
        {"action": "wait_for", "selector": "#got"}]})
    assert "Received: name=Bob, size=small" in clicked
    later = browser.call({"url": site.url("/slow-text"), "steps": [
        {"action": "wait_for_text", "value": "arrived"}]})
    assert later.endswith("arrived")


def test_a_redirect_to_a_host_not_allowed_is_refused(host: BrowserHost, workspace: Path,
                                                    site: Site) -> None:
    site.hits.clear()
    browser = tool(host, workspace, ["127.0.0.1"])
    with pytest.raises(ToolRefused) as refused:
        browser.call({"url": site.url("/redirect-out")})
    assert f"refused: GET http://localhost:{site.port}/: host 'localhost' is not in " \
           "tools.allowed_hosts (127.0.0.1)" in str(refused.value)
    assert [s["outcome"] for s in refused.value.spans][-1] == "refused"
    assert site.hits == [f"127.0.0.1:{site.port}/redirect-out"]  # never reached localhost


def test_a_sub_request_is_refused_by_name_and_by_address(host: BrowserHost, workspace: Path,
                                                        site: Site) -> None:
    site.hits.clear()
    by_name = tool(host, workspace, ["127.0.0.1"]).call({"url": site.url("/private-image")})
    assert "picture:" in by_name
    assert f"refused: GET http://localhost:{site.port}/pixel.png: host 'localhost' is not " \
           "in tools.allowed_hosts" in by_name
    # "*" allows the name, but localhost is a loopback address: only an exact entry reaches it
    by_address = tool(host, workspace, ["127.0.0.1", "*"]).call(
        {"url": site.url("/private-image")})
    assert f"refused: GET http://localhost:{site.port}/pixel.png: 'localhost' resolves to " \
           in by_address and "a loopback address, which is reached only when " \
           "tools.allowed_hosts lists 'localhost' by its exact name" in by_address
    assert not any("pixel" in hit for hit in site.hits)
    # listed by its exact name, it is reached
    listed = tool(host, workspace, ["127.0.0.1", "localhost"]).call(
        {"url": site.url("/private-image")})
    assert "refused" not in listed and f"localhost:{site.port}/pixel.png" in site.hits


def test_refused_before_anything_opens(host: BrowserHost, workspace: Path, site: Site) -> None:
    browser = tool(host, workspace, ["127.0.0.1"])
    for url in ("file:///etc/passwd", "data:text/html,<h1>x</h1>", "javascript:alert(1)",
                "chrome://settings"):
        with pytest.raises(ToolRefused, match="only http:// and https:// pages are opened"):
            browser.call({"url": url})
    with pytest.raises(ToolRefused, match=r"host 'localhost' is not in tools\.allowed_hosts"):
        browser.call({"url": site.other_url("/")})
    with pytest.raises(ToolRefused, match=r"tools.allowed_hosts \(empty, so every host is "):
        tool(host, workspace, []).call({"url": site.url("/")})
    with pytest.raises(ToolError, match="step 1 must be an object whose action is one of"):
        browser.call({"url": site.url("/"), "steps": [{"action": "evaluate", "value": "1"}]})
    with pytest.raises(ToolError, match=r"step 1 \(fill\) needs a value string"):
        browser.call({"url": site.url("/"), "steps": [{"action": "fill", "selector": "#x"}]})
    with pytest.raises(ToolError, match="is not a screenshot name"):
        browser.call({"url": site.url("/"), "screenshot": "../../config.yaml"})


def test_downloads_are_kept_under_the_cap_only(host: BrowserHost, workspace: Path,
                                               site: Site) -> None:
    browser = tool(host, workspace, ["127.0.0.1"], max_bytes=1024 * 1024)
    small = browser.call({"url": site.url("/small-download"), "read": "none"})
    assert "saved: files/browser/downloads/data.bin" in small
    assert (workspace / "files/browser/downloads/data.bin").stat().st_size == 2000
    big = browser.call({"url": site.url("/big-download"), "read": "none"})
    # cancelled while it grows, or refused once done if it came faster than a look: not kept
    assert "refused: download refused: data.bin is over tools.max_bytes (1048576 bytes): " in big
    assert "not kept (raise tools.max_bytes to allow it)" in big
    assert sorted(p.name for p in (workspace / "files/browser/downloads").iterdir()) == \
        ["data.bin"]


def test_a_page_that_never_finishes_loading_times_out(host: BrowserHost, workspace: Path,
                                                      site: Site) -> None:
    browser = tool(host, workspace, ["127.0.0.1"], timeout=1.5)
    with pytest.raises(ToolError, match=r"open http://127\.0\.0\.1:\d+/never: .*Timeout "
                                        r"1500ms exceeded") as failed:
        browser.call({"url": site.url("/never")})
    assert steps(failed.value.spans)[-1] == ("browser:open", "error")
    # the browser goes on serving
    assert "Welcome" in browser.call({"url": site.url("/")})


def test_runs_in_the_sandbox_where_there_is_one(host: BrowserHost) -> None:
    if not host.confined:
        pytest.skip(find_sandbox().describe())
    assert host.pid is not None
    chain = [psutil.Process(host.pid).name()]
    assert chain == ["bwrap"]
    assert any("chromium" in p.name() or "chrome" in p.name()
               for p in psutil.Process(host.pid).children(recursive=True))
