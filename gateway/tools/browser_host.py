"""The browser, in a child process: `python -m gateway.tools.browser_host`.

Why a process: Playwright's sync API is greenlet+asyncio and its async API is asyncio; neither
may run on the gateway's gevent loop (the thread rule in ARCHITECTURE.md). Here is plain
asyncio. One Chromium (the system's, headless) serves every call, started at the first call
and again if it dies; each call gets a fresh browser context (no cookies or storage shared
between calls) with one page, and at most `pages` calls run at once (the rest wait).

Every request of a call's page leaves through `browser_proxy.Proxy`, which checks it against
the call's allowed hosts by name and address; service workers are blocked; only http(s) URLs
are opened. A call is a list of steps on one page (open, fill, click, wait, screenshot), each
within the call's time-out and each reported as a span; the page is read as text or Markdown
by fixed code (`browser_read`), never by code a caller sends.

Protocol, JSON lines. In: `{"op": "config", "executable", "pages"}` (first), then `{"op":
"call", "id", "url", "steps": [...], "read", "screenshot", "policy": {"allowed_hosts",
"max_bytes", "timeout", "files"}}`. Out: `{"id", "url", "status", "title", "content",
"truncated", "saved", "refused", "steps"}` or `{"id", "error", "refused", "steps"}`. The
process ends when stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Download, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from gateway.common.child_lines import Lines, Out, each_line, run
from gateway.tools.browser_proxy import Gate, Proxy
from gateway.tools.browser_read import MARKDOWN_JS, TEXT_JS
from gateway.tools.reach import Reach

ARGS = ["--disable-dev-shm-usage", "--dns-prefetch-disable", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--disable-features=AutofillServerCommunication,OptimizationHints,MediaRouter",
        "--disable-client-side-phishing-detection", "--disable-domain-reliability"]
DOWNLOAD_POLL = 0.05


class StepFailed(Exception):
    """A step could not be done; the message says which and why."""


class Call:
    """One call's page, its steps' spans and what it saved, refused and read."""

    def __init__(self, line: dict[str, Any], gate: Gate) -> None:
        self.line = line
        self.gate = gate
        policy = line["policy"]
        self.timeout_ms = float(policy["timeout"]) * 1000
        self.max_bytes = int(policy["max_bytes"])
        self.files = Path(policy["files"])
        self.started = time.perf_counter()
        self.steps: list[dict[str, Any]] = []
        self.saved: list[str] = []
        self.notes: list[str] = []
        self.downloads: list[asyncio.Task[None]] = []

    def span(self, step: str, begin: float, outcome: str, detail: str) -> None:
        self.steps.append({"step": f"browser:{step}",
                           "offset_ms": (begin - self.started) * 1000,
                           "duration_ms": (time.perf_counter() - begin) * 1000,
                           "outcome": outcome, "detail": detail[:300]})

    def _too_big(self, name: str, how: str, begin: float) -> None:
        """A download over `tools.max_bytes`: refused, noted for the caller, a span."""
        why = (f"{name} is over tools.max_bytes ({self.max_bytes} bytes): {how}, not kept "
               "(raise tools.max_bytes to allow it)")
        self.notes.append(f"download refused: {why}")
        self.span("download", begin, "refused", why)

    async def timed(self, step: str, detail: str, work: Any) -> Any:
        """Run one step as a span; a Playwright error becomes StepFailed naming the step."""
        begin = time.perf_counter()
        try:
            result = await work
        except PlaywrightError as e:
            why = _short(e)
            if self.gate.refused:
                why += "; refused: " + "; ".join(self.gate.refused[-3:])
            self.span(step, begin, "refused" if self.gate.refused else "error",
                      f"{detail}: {why}")
            raise StepFailed(f"{step} {detail}: {why}") from e
        self.span(step, begin, "ok", detail)
        return result

    def shot_path(self, name: str) -> Path:
        self.files.mkdir(parents=True, exist_ok=True)
        return self.files / name

    async def save_download(self, download: Download, folder: Path, seen: set[str],
                            claimed: set[str]) -> None:
        """Keep a download under `max_bytes` in files/; cancel and drop one that grows over."""
        begin = time.perf_counter()
        name = _safe_name(download.suggested_filename) or "download"
        watcher = asyncio.create_task(_watch_size(folder, self.max_bytes, seen, claimed))
        finished = asyncio.create_task(download.path())
        done, _ = await asyncio.wait({watcher, finished}, return_when=asyncio.FIRST_COMPLETED)
        if watcher in done and watcher.result():
            await download.cancel()
            finished.cancel()
            with contextlib.suppress(Exception):
                await download.delete()
            self._too_big(name, "cancelled", begin)
            return
        watcher.cancel()
        try:
            path = await finished
        except PlaywrightError as e:
            self.span("download", begin, "error", f"{name}: {_short(e)}")
            return
        size = os.path.getsize(path)
        if size > self.max_bytes:  # it finished between two looks of the watcher
            await download.delete()
            self._too_big(name, f"{size} bytes", begin)
            return
        target = _free_name(self.shot_path("downloads/" + name))
        target.parent.mkdir(parents=True, exist_ok=True)
        await download.save_as(target)
        await download.delete()
        self.saved.append(str(target))
        self.span("download", begin, "ok", f"{name}: {size} bytes")


class Host:
    """The one browser and the proxy its pages go through."""

    def __init__(self, out: Out) -> None:
        self.out = out
        self.executable = "/usr/bin/chromium"
        self.pages = asyncio.Semaphore(4)
        self.proxy = Proxy()
        self.playwright: Playwright | None = None
        self.browser: Browser | None = None
        self.starting = asyncio.Lock()
        self.downloads = Path(tempfile.mkdtemp(prefix="moltbot-downloads-"))
        self.claimed: set[str] = set()  # in-progress download files a watcher follows
        self.tasks: set[asyncio.Task[None]] = set()

    def take(self, line: dict[str, Any]) -> None:
        if line.get("op") == "config":
            self.executable = str(line.get("executable") or self.executable)
            self.pages = asyncio.Semaphore(max(1, int(line.get("pages") or 4)))
        elif line.get("op") == "call":
            task = asyncio.create_task(self.answer(line))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def browser_now(self) -> Browser:
        async with self.starting:
            if self.browser is None or not self.browser.is_connected():
                if self.proxy.server is None:
                    await self.proxy.start()
                if self.playwright is None:
                    self.playwright = await async_playwright().start()
                self.browser = await self.playwright.chromium.launch(
                    executable_path=self.executable, headless=True, args=ARGS,
                    downloads_path=self.downloads)
            return self.browser

    async def answer(self, line: dict[str, Any]) -> None:
        gate = self.proxy.open_gate(Reach(list(line["policy"]["allowed_hosts"])))
        call = Call(line, gate)
        try:
            async with self.pages:
                reply = await self.run_call(call)
        except StepFailed as e:
            reply = {"error": str(e)}
        except Exception as e:  # the browser died or could not start: say so, stay up
            reply = {"error": f"the browser failed: {_short(e)}"}
        finally:
            self.proxy.close_gate(gate)
        reply.update({"id": line.get("id"), "refused": gate.refused + call.notes,
                      "steps": call.steps, "saved": call.saved})
        self.out.send(reply)

    async def run_call(self, call: Call) -> dict[str, Any]:
        browser = await call.timed("start", self.executable, self.browser_now())
        proxy = {"server": f"http://127.0.0.1:{self.proxy.port}", "username": call.gate.user,
                 "password": call.gate.password}
        context = await browser.new_context(proxy=proxy, accept_downloads=True,
                                            service_workers="block")
        try:
            context.set_default_timeout(call.timeout_ms)
            page = await context.new_page()
            page.on("download", lambda d: call.downloads.append(asyncio.create_task(
                call.save_download(d, self.downloads, _names(self.downloads), self.claimed))))
            return await self.steps(call, page)
        finally:
            if call.downloads:
                await asyncio.gather(*call.downloads, return_exceptions=True)
            await context.close()

    async def steps(self, call: Call, page: Page) -> dict[str, Any]:
        line = call.line
        url = str(line["url"])
        status = 0
        try:
            response = await call.timed("open", url, page.goto(url, wait_until=line.get(
                "wait_until") or "load"))
            status = response.status if response is not None else 0
        except StepFailed as e:
            if "Download is starting" not in str(e):
                raise
            call.steps[-1]["outcome"] = "ok"
        for step in line.get("steps") or []:
            await self.step(call, page, step)
            _check_scheme(page)
        if line.get("screenshot"):
            await self.screenshot(call, page, str(line["screenshot"]),
                                  bool(line.get("full_page")))
        content, truncated = "", False
        read = line.get("read") or "text"
        if read != "none":
            content = await call.timed("read", read, page.evaluate(
                MARKDOWN_JS if read == "markdown" else TEXT_JS))
            if len(content) > call.max_bytes:
                content, truncated = content[:call.max_bytes], True
        title = await page.title()
        return {"url": page.url, "status": status, "title": title, "content": content,
                "truncated": truncated}

    async def step(self, call: Call, page: Page, step: dict[str, Any]) -> None:
        action = step["action"]
        selector = str(step.get("selector") or "")
        value = str(step.get("value") or "")
        if action == "fill":
            await call.timed("fill", selector, page.fill(selector, value))
        elif action == "click":
            await call.timed("click", selector, page.click(selector))
        elif action == "select":
            await call.timed("select", f"{selector} = {value}",
                             page.select_option(selector, value))
        elif action == "check":
            await call.timed("check", selector, page.check(selector))
        elif action == "press":
            await call.timed("press", f"{selector} {value}", page.press(selector, value))
        elif action == "submit":
            async with page.expect_navigation(wait_until="load"):
                await call.timed("submit", selector, page.locator(selector).evaluate(
                    "form => form.requestSubmit ? form.requestSubmit() : form.submit()"))
        elif action == "wait_for":
            await call.timed("wait_for", selector, page.wait_for_selector(selector))
        elif action == "wait_for_text":
            await call.timed("wait_for_text", value, page.get_by_text(value).first.wait_for())
        elif action == "screenshot":
            await self.screenshot(call, page, value, bool(step.get("full_page")))

    async def screenshot(self, call: Call, page: Page, name: str, full_page: bool) -> None:
        target = call.shot_path(name)
        await call.timed("screenshot", name, page.screenshot(path=target, full_page=full_page))
        call.saved.append(str(target))

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.browser is not None:
            with contextlib.suppress(Exception):
                await self.browser.close()
        if self.playwright is not None:
            with contextlib.suppress(Exception):
                await self.playwright.stop()
        await self.proxy.close()
        for leftover in self.downloads.glob("*"):
            leftover.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.downloads.rmdir()


async def _watch_size(folder: Path, limit: int, seen: set[str], claimed: set[str]) -> bool:
    """True once this download grows over `limit`. Chromium writes a download in progress
    to a file named by its id in `folder`: this one is the first file that was not there
    when it began (`seen`) and that no other download's watcher follows (`claimed`). Polled,
    as no event tells the size."""
    mine = None
    try:
        while True:
            if mine is None:
                mine = next((n for n in sorted(_names(folder) - seen - claimed)), None)
                if mine is not None:
                    claimed.add(mine)
            if mine is not None:
                try:
                    if (folder / mine).stat().st_size > limit:
                        return True
                except OSError:  # renamed or gone: look again
                    claimed.discard(mine)
                    mine = None
            await asyncio.sleep(DOWNLOAD_POLL)
    finally:
        if mine is not None:
            claimed.discard(mine)


def _names(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def _check_scheme(page: Page) -> None:
    if not re.match(r"^(https?:|about:blank)", page.url):
        raise StepFailed(f"the page went to {page.url[:100]}: only http and https pages are "
                         "opened")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._")[:100]


def _free_name(path: Path) -> Path:
    n, found = 1, path
    while found.exists():
        found = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return found


def _short(error: BaseException) -> str:
    """Playwright's message without its call log."""
    text = str(error).split("\nCall log:")[0].strip()
    return re.sub(r"\s+", " ", text)[:300] or type(error).__name__


async def serve(lines: Lines, out: Out) -> None:
    host = Host(out)
    await each_line(lines, host.take, host.close)


if __name__ == "__main__":
    run(serve)
