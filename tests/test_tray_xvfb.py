"""The real tray, end to end: under Xvfb, docked in trayer (a system tray host), with the
Secret Service of gnome-keyring, driven through its menu items' actions.

The tray runs in its own process (`build_tray` then `run`, as `python -m desktop` does) with a
small command reader beside its event loop: the test names a menu item, the reader calls that
item as pystray would on a click. The console link the tray opens is taken from `$BROWSER` and
opened in headless Chromium. Screenshots go to tests/output/.

No backend is forced: the tray chooses as it does for users (`desktop.backend`). trayer is an
XEmbed tray with no StatusNotifier host, and the AppIndicator typelib is installed (test.sh
installs it), the case in which pystray's own choice showed nothing; ours is GTK (PyGObject),
whose icon docks in trayer over XEmbed: a real
right click (XTEST) opens its menu, screenshotted, and the keyboard chooses Start in it; a real
left click runs the default item, Open console; Stop and Quit are invoked through their menu
items' actions.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from desktop.backend import look
from desktop.icon import COLOURS, State
from gateway.common.workspace import Workspace
from gateway.ops.control import stop_gateway
from tests.conftest import ROOT, free_port, model_config, write_config
from tests.fakes.fake_model import FakeModelServer
from tests.test_chat_page_browser import CHROMIUM, CHROMIUM_ARGS
from tests.tray_support import make_fake_desktop, require, running_secret_service

OUTPUT = ROOT / "tests" / "output"
SCREEN = (640, 480)
TRAY_WIDTH, TRAY_HEIGHT = 96, 32
REPLY_WAIT = 60.0

DRIVER = """
import json, sys, threading, traceback
from desktop.__main__ import build_tray, setup_logging

setup_logging()  # as `python -m desktop` does
tray = build_tray(None, int(sys.argv[1]), False)

def answer(command):
    if command["do"] == "click":
        next(i for i in tray.icon.menu.items if i.text == command["item"])(tray.icon)
    return {"state": str(tray.supervisor.state), "status": tray.status, "looping": tray.looping,
            "visible": tray.icon.visible, "keyring": tray.keyring_problem,
            "notice": tray.last_notice, "backend": type(tray.icon).__module__}

def serve():
    for line in sys.stdin:
        try:
            reply = answer(json.loads(line))
        except Exception:
            reply = {"error": traceback.format_exc()}
        print(json.dumps(reply), flush=True)

threading.Thread(target=serve, daemon=True).start()
tray.run()
"""


class TrayProcess:
    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.log = log
        with open(log, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(port)], cwd=ROOT,
                                         env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, text=True, bufsize=1)

    def send(self, reply: bool = True, **command: str) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(command) + "\n")
        if not reply:  # Quit: the process ends instead of answering
            return {}
        ready, _, _ = select.select([self.proc.stdout], [], [], REPLY_WAIT)
        line = self.proc.stdout.readline() if ready else ""
        assert line, f"the tray did not answer:\n{self.log.read_text(errors='replace')}"
        answer = json.loads(line)
        assert "error" not in answer, answer["error"]
        return answer

    def wait_for(self, key: str, value: Any, deadline_s: float = 30.0) -> dict[str, Any]:
        """Look until `key` equals `value` (or `value(seen[key])` holds, for a callable)."""
        def met(seen: Any) -> bool:
            return bool(value(seen)) if callable(value) else seen == value

        deadline = time.monotonic() + deadline_s
        while not met((seen := self.send(do="look"))[key]):
            if time.monotonic() > deadline:
                raise AssertionError(f"tray {key} stayed {seen[key]!r}, not {value!r}: {seen}")
            time.sleep(0.1)
        return seen


@pytest.fixture
def x_display() -> Iterator[str]:
    """Xvfb on a free display, with trayer docked at the top right owning the system tray."""
    require("Xvfb", "trayer")
    import Xlib.display

    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0",
                             f"{SCREEN[0]}x{SCREEN[1]}x24",
                             "-nolisten", "tcp"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert xvfb.stdout is not None
    display = f":{xvfb.stdout.readline().strip()}"
    trayer = subprocess.Popen(["trayer", "--edge", "top", "--align", "right", "--widthtype",
                               "pixel", "--width", str(TRAY_WIDTH), "--heighttype", "pixel",
                               "--height", str(TRAY_HEIGHT), "--SetDockType", "true"],
                              env={**os.environ, "DISPLAY": display},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    x = Xlib.display.Display(display)
    try:
        tray_selection = x.intern_atom("_NET_SYSTEM_TRAY_S0")
        deadline = time.monotonic() + 20
        while not x.get_selection_owner(tray_selection):
            assert time.monotonic() < deadline, "trayer never took the system tray selection"
            time.sleep(0.05)
        yield display
    finally:
        x.close()
        for proc in (trayer, xvfb):
            proc.terminate()
            proc.wait(10)
        xvfb.stdout.close()


def grab_tray(display: str) -> Any:
    """The trayer strip at the top right of the otherwise black screen."""
    from PIL import ImageGrab

    screen = ImageGrab.grab(xdisplay=display)
    return screen.crop((screen.width - TRAY_WIDTH, 0, screen.width, TRAY_HEIGHT))


def find_colour(image: Any, rgb: tuple[int, int, int], tolerance: int = 24) -> Any:
    """The centre of the pixels near `rgb` (the icon is scaled to the panel), or None."""
    points = [(x, y) for y in range(image.height) for x in range(image.width)
              if all(abs(a - b) <= tolerance
                     for a, b in zip(image.getpixel((x, y))[:3], rgb, strict=True))]
    if not points:
        return None
    return (sum(p[0] for p in points) // len(points), sum(p[1] for p in points) // len(points))


def wait_for_icon(display: str, rgb: tuple[int, int, int]) -> tuple[Any, tuple[int, int]]:
    """The docked icon in that colour: the strip's picture and the icon's screen position."""
    deadline = time.monotonic() + 20
    while not (at := find_colour(strip := grab_tray(display), rgb)):
        assert time.monotonic() < deadline, f"no icon in {rgb} docked in trayer"
        time.sleep(0.1)
    return strip, (SCREEN[0] - TRAY_WIDTH + at[0], at[1])


def click(display: str, at: tuple[int, int], button: int) -> None:
    """A real click (XTEST), as a user's mouse makes it."""
    import Xlib.display
    from Xlib import X
    from Xlib.ext import xtest

    x = Xlib.display.Display(display)
    try:
        xtest.fake_input(x, X.MotionNotify, x=at[0], y=at[1])
        xtest.fake_input(x, X.ButtonPress, button)
        xtest.fake_input(x, X.ButtonRelease, button)
        x.sync()
    finally:
        x.close()


def press(display: str, *keys: str) -> None:
    """Real key presses (XTEST), e.g. "Down", "Return"."""
    import Xlib.display
    from Xlib import XK, X
    from Xlib.ext import xtest

    x = Xlib.display.Display(display)
    try:
        for name in keys:
            key = x.keysym_to_keycode(XK.string_to_keysym(name))
            xtest.fake_input(x, X.KeyPress, key)
            xtest.fake_input(x, X.KeyRelease, key)
        x.sync()
    finally:
        x.close()


def wait_for_menu(display: str) -> Any:
    """The popped-up menu: a new region of the screen below the panel that is not black."""
    from PIL import ImageGrab

    deadline = time.monotonic() + 20
    while True:
        screen = ImageGrab.grab(xdisplay=display)
        below = screen.crop((0, TRAY_HEIGHT, screen.width, screen.height))
        if (box := below.getbbox()) and box[3] - box[1] > 60:
            return below.crop(box)
        assert time.monotonic() < deadline, "right-clicking the icon showed no menu"
        time.sleep(0.1)


def test_the_tray_starts_the_gateway_and_opens_the_console_signed_in(
        tmp_path: Path, home: Path, fake_model: FakeModelServer, x_display: str) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    pytest.importorskip("gi", reason="the tray's menu on Linux needs PyGObject "
                        "(pip install -e '.[tray]'; apt-get install gir1.2-gtk-3.0)")
    from playwright.sync_api import expect, sync_playwright

    OUTPUT.mkdir(parents=True, exist_ok=True)
    write_config(home, model_config(fake_model.url))
    port = free_port()
    desktop = make_fake_desktop(tmp_path / "desktop")
    with running_secret_service(tmp_path) as secrets:
        env = {**os.environ, **secrets.env, **desktop.env, "DISPLAY": x_display,
               "MOLTBOT_HOME": str(home), "XDG_CONFIG_HOME": str(tmp_path / "config")}
        env.pop("PYSTRAY_BACKEND", None)
        assert look().has_appindicator, "apt-get install gir1.2-ayatanaappindicator3-0.1"
        tray = TrayProcess(env, port, tmp_path / "tray.err")
        try:
            first = tray.wait_for("looping", True)
            assert first["backend"] == "pystray._gtk" and first["keyring"] is None
            assert first["state"] == "stopped"
            strip, icon_at = wait_for_icon(x_display, COLOURS[State.STOPPED])
            strip.save(OUTPUT / "tray-icon-stopped.png")
            click(x_display, icon_at, 3)  # right click: the menu
            wait_for_menu(x_display).save(OUTPUT / "tray-menu.png")
            press(x_display, "Down", "Return")  # the first item that can be chosen: Start

            # the state is set a moment before the status line is redrawn from it
            shown = tray.wait_for("status", lambda status: status.startswith("Running on"))
            assert shown["state"] == "running"
            assert shown["status"].startswith(f"Running on port {port}")
            url = f"http://127.0.0.1:{port}"
            assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
            strip, icon_at = wait_for_icon(x_display, COLOURS[State.RUNNING])
            strip.save(OUTPUT / "tray-icon-running.png")

            click(x_display, icon_at, 1)  # left click: the default item, Open console
            link = desktop.wait_opened(1)[0]
            assert link.startswith(f"{url}/#code=") and "mb_" not in link
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                            args=CHROMIUM_ARGS)
                page = browser.new_page()
                page.goto(link)
                expect(page.locator("#shell")).to_be_visible()  # the console, signed in
                assert "code" not in page.url
                page.click("nav a[data-page=chat]")
                expect(page.locator("#chat-status")).to_have_text("connected")
                page.fill("#chat-text", "hello from the tray")
                page.keyboard.press("Enter")
                expect(page.locator(".bubble.bot").last).to_contain_text(
                    "echo: hello from the tray")
                page.screenshot(path=str(OUTPUT / "console-signed-in.png"))
                replay = browser.new_page()  # the same link again: the code is spent
                replay.goto(link)
                expect(replay.locator("#signin")).to_be_visible()
                expect(replay.locator("#signin-error")).not_to_be_empty()
                browser.close()

            tray.send(do="click", item="Stop gateway")
            tray.wait_for("state", "stopped")
            assert not Workspace(home).pid_path(port).exists()
            tray.send(reply=False, do="click", item="Quit")
            assert tray.proc.wait(20) == 0
            said = (tmp_path / "tray.err").read_text(encoding="utf-8")
            assert "tray backend: gtk (an XEmbed system tray is running)" in said
            # no line per /healthz poll, no traceback from a missing notification service
            assert "HTTP Request" not in said and "Traceback" not in said, said
        finally:
            if tray.proc.poll() is None:
                tray.proc.kill()
                tray.proc.wait()
            # a gateway the tray started runs in its own session: a killed tray leaves it
            stop_gateway(Workspace(home), port, 1)
            for stream in (tray.proc.stdin, tray.proc.stdout):
                if stream:
                    stream.close()
