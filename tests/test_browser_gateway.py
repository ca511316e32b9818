"""The browser tool through the real gateway: a skill reads a page, fills a form and saves a
screenshot within the allowed hosts, a redirect out of them is refused, each step is a span
of the message's trace (the screenshot's one linked from the console), and the model is
offered the tool only where it runs in bubblewrap."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from gateway.tools.browser import code_folders
from gateway.tools.sandbox import find_sandbox
from tests.conftest import (
    GatewayProcess,
    assert_only_gateway_left,
    free_port,
    model_config,
    write_config,
)
from tests.fakes.fake_model import FakeModelServer
from tests.fakes.web_pages import Site, running
from tests.test_chat_page_browser import (  # noqa: F401  (the console's Chromium fixture)
    browser,
    console_page,
)

SKILL = '''\
from moltbot_sdk import Skill, context

class Web(Skill):
    @context.handle(intent="order", command="/order")
    def order(self, msg):
        return context.tool("browser", url=msg["text"].strip(), screenshot="order.png", steps=[
            {"action": "fill", "selector": "#name", "value": "Grace Hopper"},
            {"action": "select", "selector": "#size", "value": "large"},
            {"action": "submit", "selector": "#order"}])

    @context.handle(intent="peek", command="/peek")
    def peek(self, msg):
        try:
            return context.tool("browser", url=msg["text"].strip(), read="markdown")
        except Exception as e:
            return f"failed: {type(e).__name__}: {e}"
'''


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    yield from running()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, model: FakeModelServer,
       site: Site) -> Iterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("browser-gw") / "ai-gateway"
    (home / "skills").mkdir(parents=True)
    (home / "skills" / "web.py").write_text(SKILL, encoding="utf-8")
    write_config(home, {**model_config(model.url), "tools": {
        "allowed_hosts": ["127.0.0.1"], "offer_to_model": ["browser"],
        "browser_timeout": "10s"}})
    gateway = GatewayProcess(home, free_port()).start()
    yield gateway
    gateway.stop()


@pytest.fixture(autouse=True)
def no_leftover_processes(gw: GatewayProcess) -> Iterator[None]:
    yield
    assert_only_gateway_left(gw)


def spans(gw: GatewayProcess, msg_id: str) -> list[dict[str, Any]]:
    trace = httpx.get(f"{gw.url}/api/v1/messages/{msg_id}/trace", headers=gw.headers,
                      timeout=10).json()
    return list(trace["spans"])


def test_a_skill_fills_a_form_and_saves_a_screenshot(gw: GatewayProcess, site: Site) -> None:
    answered = gw.post(f"/order {site.url('/form')}").json()
    assert "title: Thanks" in answered["reply"]
    assert "saved: files/browser/order.png" in answered["reply"]
    assert "Received: name=Grace Hopper, size=large" in answered["reply"]
    shot = gw.home / "files" / "browser" / "order.png"
    assert shot.read_bytes().startswith(b"\x89PNG")
    steps = {s["step"]: s for s in spans(gw, answered["id"])}
    for step in ("tool:browser", "browser:open", "browser:fill", "browser:select",
                 "browser:submit", "browser:screenshot", "browser:read"):
        assert steps[step]["outcome"] == "ok", step
    assert steps["browser:screenshot"]["detail"] == "order.png"
    # the console serves the screenshot its replay links to, to a signed-in user only
    got = httpx.get(f"{gw.url}/api/v1/browser/shots/order.png", headers=gw.headers, timeout=10)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert got.content == shot.read_bytes()
    assert httpx.get(f"{gw.url}/api/v1/browser/shots/order.png", timeout=10).status_code == 401
    assert httpx.get(f"{gw.url}/api/v1/browser/shots/..%2Fconfig.yaml", headers=gw.headers,
                     timeout=10).status_code == 404


def test_a_skill_reads_markdown_and_is_refused_out_of_the_allowed_hosts(
        gw: GatewayProcess, site: Site) -> None:
    read = gw.post(f"/peek {site.url('/')}").json()["reply"]
    assert f"[form]({site.url('/form')})" in read
    site.hits.clear()
    refused = gw.post(f"/peek {site.url('/redirect-out')}").json()
    assert refused["reply"].startswith("failed: ToolRefused: browser: open ")
    assert f"refused: GET http://localhost:{site.port}/: host 'localhost' is not in " \
           "tools.allowed_hosts (127.0.0.1)" in refused["reply"]
    assert not any(hit.startswith("localhost") for hit in site.hits)
    traced = {s["step"]: s["outcome"] for s in spans(gw, refused["id"])}
    assert traced["tool:browser"] == "refused" and traced["browser:open"] == "refused"
    for url in ("file:///etc/passwd", f"http://localhost:{site.port}/"):
        said = gw.post(f"/peek {url}").json()["reply"]
        assert said.startswith("failed: ToolRefused: browser: refused ")


def test_the_model_gets_the_browser_only_in_the_sandbox(gw: GatewayProcess,
                                                        model: FakeModelServer,
                                                        site: Site) -> None:
    model.tool_call_when(contains="look at the site", name="browser",
                         arguments={"url": site.url("/"), "read": "markdown"})
    answered = gw.post("Please look at the site").json()
    offered = [t["function"]["name"] for t in model.requests[-1]["body"].get("tools") or []]
    if not find_sandbox().available:
        assert "browser" not in offered
        return
    assert "browser" in offered
    assert answered["reply"].startswith(f"tool said: page: {site.url('/')} (HTTP 200)")
    assert "# Welcome" in answered["reply"]
    steps = [s["step"] for s in spans(gw, answered["id"])]
    assert "tool:browser" in steps and "browser:open" in steps and "browser:read" in steps
    # refused for the model as for a skill, and the model is told why
    model.tool_call_when(contains="follow the redirect", name="browser",
                         arguments={"url": site.url("/redirect-out")})
    told = gw.post("Please follow the redirect").json()["reply"]
    assert told.startswith("tool said: refused: browser: open ")
    assert "host 'localhost' is not in tools.allowed_hosts" in told


def test_the_browser_sees_only_files_of_the_workspace(gw: GatewayProcess,
                                                     site: Site) -> None:
    """Confined, the browser process's root holds no config.yaml, data/ or skills/."""
    if not find_sandbox().available:
        pytest.skip(find_sandbox().describe())
    gw.post(f"/peek {site.url('/')}")
    assert gw.proc is not None
    bwrap = next(p for p in psutil.Process(gw.proc.pid).children(recursive=True)
                 if p.name() == "bwrap")
    inside = next(p for p in bwrap.children(recursive=True) if "python" in p.name())
    root = Path(f"/proc/{inside.pid}/root") / str(gw.home).lstrip("/")
    assert sorted(p.name for p in root.iterdir()) == ["files"]
    # of the user's home, only the way down to the Python the child runs (pyenv's, say)
    home = Path(f"/proc/{inside.pid}/root/root")
    shown = [p for p in (home.iterdir() if home.exists() else [])]
    assert all(any(f.startswith(f"/root/{p.name}") for f in code_folders()) for p in shown)


def test_the_console_replay_links_the_screenshot(browser: object, gw: GatewayProcess,  # noqa: F811
                                                 site: Site) -> None:
    from playwright.sync_api import expect

    answered = gw.post(f"/order {site.url('/form')}").json()
    with console_page(browser, gw, "sessions") as page:
        page.goto(f"{gw.url}/#/sessions/msg/{answered['id']}")
        row = page.locator(".wf-row", has_text="browser:screenshot")
        link = row.locator("a.shot")
        expect(link).to_have_attribute("href", "/api/v1/browser/shots/order.png")
        expect(link).to_have_text("open the screenshot")
        shot = page.request.get(f"{gw.url}/api/v1/browser/shots/order.png")  # signed in
        assert shot.status == 200 and shot.body().startswith(b"\x89PNG")
