"""The `browser` tool: open a page, do a few steps on it, read it, take a screenshot.

The gateway's side. The browser itself runs in `browser_host`, a child process started at the
first call (one Chromium for every caller); `BrowserHost` keeps it running and matches answers
to calls, `BrowserTool` checks a call's arguments, sends it and turns the answer into text and
spans. Skills reach it through the skill host's pipe (`context.tool("browser", ...)`), the
model directly; both get the same host.

Confinement: where bubblewrap works (`sandbox.find_sandbox`), the child runs in the sandbox
with the network shared: it sees the system's programs, Python and the gateway's code
read-only and, of the workspace, only `files/` (where screenshots and downloads go); config,
data, skills and the user's home are not there. Only then is the tool offered to the model;
without bubblewrap skills still get it (they are the owner's code), unconfined.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import sys
import sysconfig
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gateway
from gateway.common.child_link import ChildLink
from gateway.tools.base import Tool, ToolError, ToolRefused, check_arguments, get_str
from gateway.tools.reach import Reach
from gateway.tools.sandbox import Limits, Sandbox

log = logging.getLogger(__name__)

MODULE = "gateway.tools.browser_host"
FOLDER = "files/browser"  # screenshots and downloads, inside the workspace
ACTIONS = ("fill", "click", "select", "check", "press", "submit", "wait_for", "wait_for_text",
           "screenshot")
NEEDS_SELECTOR = ("fill", "click", "select", "check", "press", "submit", "wait_for")
NEEDS_VALUE = ("fill", "select", "press", "wait_for_text", "screenshot")
MAX_STEPS = 20
REPLY_MARGIN = 10.0  # the child times each step out; the gateway waits this much longer
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}\.png$")
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONPATH")
_ETC = ("/etc/fonts", "/etc/chromium", "/etc/chromium.d", "/etc/resolv.conf", "/etc/hosts",
        "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates", "/etc/host.conf")

Ask = Callable[[dict[str, Any]], dict[str, Any]]

_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "description": "The http(s) page to open."},
        "steps": {
            "type": "array",
            "description": "Done in order on the page after it loads.",
            "items": {
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": list(ACTIONS)},
                    "selector": {"type": "string",
                                 "description": "CSS selector (or text=... ) of the element"},
                    "value": {"type": "string", "description": "Text to fill, option to "
                              "select, key to press, text to wait for, or the screenshot's "
                              "file name (name.png)"},
                },
                "required": ["action"],
            },
        },
        "read": {"type": "string", "enum": ["text", "markdown", "none"],
                 "description": "How to return the page at the end (default text)."},
        "screenshot": {"type": "string",
                       "description": "Save a screenshot at the end as files/browser/NAME.png"},
        "full_page": {"type": "boolean"},
    },
    "required": ["url"],
}


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] = field(default_factory=dict)


class BrowserHost:
    """The browser's child process, started at the first call and kept running; restarted
    with backoff if it dies (the calls in flight then fail with the reason)."""

    def __init__(self, workspace: Path, *, sandbox: Sandbox | None, pages: int,
                 executable: str | None = None) -> None:
        self.workspace = workspace
        self.sandbox = sandbox
        self.pages = pages
        self.executable = executable or find_chromium()
        (workspace / FOLDER).mkdir(parents=True, exist_ok=True)  # bound into the sandbox
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._up = threading.Event()
        self._lock = threading.Lock()
        env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV or k.startswith("LC_")}
        self.link = _Link(self, MODULE, cwd=workspace, env=env, on_start=self._started,
                          on_line=self._take, on_ended=self._ended)

    @property
    def confined(self) -> bool:
        return self.sandbox is not None

    @property
    def pid(self) -> int | None:
        return self.link.pid

    def _started(self) -> None:
        self.link.send({"op": "config", "executable": self.executable, "pages": self.pages})
        self._up.set()

    def configure(self, pages: int) -> None:
        """A new `tools.browser_pages`: for the calls from now on (the running ones finish)."""
        self.pages = pages
        if self._up.is_set():
            with contextlib.suppress(OSError):
                self.link.send({"op": "config", "executable": self.executable, "pages": pages})

    def _take(self, item: dict[str, Any]) -> None:
        pending = self._pending.get(int(item.get("id") or 0))
        if pending is not None:
            pending.answer = item
            pending.done.set()

    def _ended(self, why: str, wait: float) -> None:
        self._up.clear()
        log.warning("the browser process ended (%s); starting it again in %.0fs", why, wait)
        for pending in list(self._pending.values()):
            pending.answer = {"error": f"the browser process ended ({why})"}
            pending.done.set()

    def call(self, request: dict[str, Any], wait: float) -> dict[str, Any]:
        """Send one call and wait up to `wait` seconds for its answer."""
        if not self.executable:
            raise ToolError("browser: no Chromium found (looked for " + ", ".join(CHROMIUMS)
                            + "); install it, e.g. `sudo apt-get install chromium`")
        with self._lock:
            self.link.start()  # a no-op once it runs
        if not self._up.wait(min(wait, 30.0)):
            raise ToolError("browser: the browser process did not start (see the log)")
        call_id = next(self._ids)
        pending = self._pending[call_id] = _Pending()
        try:
            self.link.send({"op": "call", "id": call_id, **request})
            if not pending.done.wait(wait):
                raise ToolError(f"browser: no answer within {wait:.0f}s")
        except OSError as e:
            raise ToolError("browser: the browser process went away") from e
        finally:
            self._pending.pop(call_id, None)
        return pending.answer

    def stop(self) -> None:
        self.link.stop()
        self._up.clear()


# the system's Chromium (Debian's, Fedora's and Ubuntu's names); the sandbox shows /usr only
CHROMIUMS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium() -> str:
    """The first system Chromium installed here, or "" when there is none."""
    return next((path for path in CHROMIUMS if os.access(path, os.X_OK)), "")


class _Link(ChildLink):
    """The child's argv: inside bubblewrap when the host is confined."""

    def __init__(self, host: BrowserHost, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.host = host

    def argv(self) -> list[str]:
        argv = super().argv()
        sandbox = self.host.sandbox
        if sandbox is None:
            return argv
        return sandbox.wrap(argv, root=self.host.workspace, write=(FOLDER,), share_net=True,
                            show=code_folders(), limits=BROWSER_LIMITS)


# Chromium maps far more address space than it uses, and the host lives as long as the
# gateway: no CPU-seconds or address-space limit; files and processes stay bounded.
BROWSER_LIMITS = Limits(cpu_seconds=None, memory_bytes=None, processes=512,
                        tmp_bytes=512 * 1024 * 1024)


def code_folders() -> tuple[str, ...]:
    """What the sandboxed child must read besides the system: Python's own folders, the
    installed packages (Playwright and its driver among them), the gateway's code, and the
    few /etc files Chromium needs (fonts, name resolution, its own settings)."""
    paths = {sys.prefix, sys.base_prefix, str(Path(gateway.__file__).parent.parent),
             *(sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib"))}
    paths |= {p for p in _ETC if os.path.exists(p)}
    return tuple(sorted(p for p in paths if p and os.path.exists(p)))


class BrowserTool(Tool):
    """Checks a call, sends it to the browser (`ask`), answers with text and spans."""

    name = "browser"
    description = (
        "Open a web page (allowed hosts only) in a headless browser, optionally fill fields, "
        "click, submit forms and take screenshots (saved under files/browser/), and read the "
        "page as text or Markdown with links.")
    parameters = _PARAMETERS

    def __init__(self, ask: Ask, *, workspace: Path, allowed_hosts: list[str], timeout: float,
                 max_bytes: int) -> None:
        self.reach = Reach(allowed_hosts)
        self.ask = ask
        self.workspace = workspace
        self.timeout = timeout
        self.max_bytes = max_bytes

    def request(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The checked call as the browser host takes it; ToolError/ToolRefused if wrong."""
        args = check_arguments(self.name, arguments)
        url = get_str(self.name, args, "url").strip()
        scheme, _, rest = url.partition("://")
        if scheme.lower() not in ("http", "https") or not rest:
            raise ToolRefused(f"browser: refused {url[:100]!r}: only http:// and https:// pages "
                              "are opened (no file:, data: or javascript: URLs)")
        host = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        refused = self.reach.refusal(host)
        if refused:
            raise ToolRefused(f"browser: refused {url[:200]}: {refused}")
        read = get_str(self.name, args, "read", "text")
        if read not in ("text", "markdown", "none"):
            raise ToolError("browser: read must be text, markdown or none")
        steps = args.get("steps") or []
        if not isinstance(steps, list) or len(steps) > MAX_STEPS:
            raise ToolError(f"browser: steps must be a list of at most {MAX_STEPS} steps")
        checked = [self._step(i, step) for i, step in enumerate(steps, 1)]
        shot = args.get("screenshot")
        if shot is not None:
            shot = _shot_name(str(shot))
        return {"url": url, "steps": checked, "read": read, "screenshot": shot,
                "full_page": bool(args.get("full_page")),
                "policy": {"allowed_hosts": self.reach.allowed_hosts,
                           "max_bytes": self.max_bytes, "timeout": self.timeout,
                           "files": str(self.workspace / FOLDER)}}

    def _step(self, n: int, step: Any) -> dict[str, Any]:
        if not isinstance(step, dict) or step.get("action") not in ACTIONS:
            raise ToolError(f"browser: step {n} must be an object whose action is one of "
                            f"{', '.join(ACTIONS)}")
        action = step["action"]
        for key, needed in (("selector", NEEDS_SELECTOR), ("value", NEEDS_VALUE)):
            if action in needed and not isinstance(step.get(key), str):
                raise ToolError(f"browser: step {n} ({action}) needs a {key} string")
        checked = {"action": action, "selector": step.get("selector"),
                   "value": step.get("value"), "full_page": bool(step.get("full_page"))}
        if action == "screenshot":
            checked["value"] = _shot_name(str(step["value"]))
        return checked

    def wait(self, request: dict[str, Any]) -> float:
        """How long the whole call may take: each step, the page's load, reading and the
        screenshot, each within `timeout`."""
        return self.timeout * (len(request["steps"]) + 4) + REPLY_MARGIN

    def traced(self, arguments: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        """The answer's text and its steps as spans."""
        request = self.request(arguments)
        answer = self.ask(request)
        spans = list(answer.get("steps") or [])
        saved = [self._shown(p) for p in answer.get("saved") or []]
        refused = [str(r) for r in answer.get("refused") or []]
        if "error" in answer:
            text = f"browser: {answer['error']}"
            if refused and not any(r in text for r in refused):
                text += "; refused: " + "; ".join(refused)
            if saved:
                text += "; saved: " + ", ".join(saved)
            error = ToolRefused if refused and "refused" in text else ToolError
            raise error(text, spans=spans)
        lines = [f"page: {answer.get('url')} (HTTP {answer.get('status')})",
                 f"title: {answer.get('title') or ''}"]
        lines += [f"saved: {path}" for path in saved]
        lines += [f"refused: {r}" for r in refused]
        if answer.get("truncated"):
            lines.append(f"(page cut at {self.max_bytes} characters: tools.max_bytes)")
        content = str(answer.get("content") or "")
        return "\n".join(lines) + ("\n\n" + content if content else ""), spans

    def call(self, arguments: dict[str, Any]) -> str:
        return self.traced(arguments)[0]

    def _shown(self, path: str) -> str:
        try:
            return Path(path).relative_to(self.workspace).as_posix()
        except ValueError:
            return path


def _shot_name(name: str) -> str:
    if not _NAME.match(name):
        raise ToolError(f"browser: {name[:100]!r} is not a screenshot name: use letters, "
                        "digits, '.', '_' or '-' ending in .png, e.g. 'front-page.png' (saved "
                        f"as {FOLDER}/NAME)")
    return name
