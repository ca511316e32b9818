"""The tray icon and its menu: what the user sees and clicks.

Each menu action is a method here; the gateway's process is the supervisor's business and the
console sign-in the credential's. A left click on the icon runs the default item: Start gateway
when it is stopped, Open console when it runs. On Linux the menu needs PyGObject (pystray's GTK
or AppIndicator backend); without it pystray falls back to plain X11, which shows the icon but
has no menu and takes no clicks, so the tray says so at start.
"""

from __future__ import annotations

import logging
import webbrowser
from datetime import datetime
from typing import Any

import httpx
from keyring.errors import KeyringError

from desktop.autostart import Autostart, tray_command
from desktop.backend import choose, import_pystray
from desktop.credential import NO_KEYRING, ConsoleCredential, console_link
from desktop.icon import State, draw_icon
from desktop.opener import open_path
from desktop.supervisor import GatewaySupervisor
from gateway.common.workspace import Workspace
from gateway.core.store import Store

log = logging.getLogger(__name__)


NO_MENU = ("This tray backend shows the icon only, with no menu: run "
           "./installers/install.sh --desktop (it installs PyGObject into Moltbot's own "
           "environment), with apt-get install gir1.2-gtk-3.0.")


class TrayUnavailable(Exception):
    """No tray can be shown here (no display, no backend); the message says what to do."""


def load_pystray() -> Any:
    """pystray with the backend that shows a tray here (`desktop.backend`), said in the log."""
    choice = choose()
    try:
        pystray = import_pystray(choice)
    except Exception as e:  # pystray connects to the display on import and fails many ways
        raise TrayUnavailable(f"No tray can be shown here ({e}). Run `moltbot tray` from your "
                              f"desktop session, or use `moltbot gateway start`.") from e
    log.info("tray backend: %s (%s)", choice.name or "the system's", choice.why)
    return pystray


def flush_x11(icon: Any) -> None:
    """Send what pystray's X11 backend left queued. When `stop()` comes from another thread
    than the icon's loop, python-xlib (0.33) can leave the window's destroy request unsent:
    the loop then waits forever for the DestroyNotify that ends it. Other backends have no
    `_display` and need nothing."""
    display = getattr(icon, "_display", None)
    if display is not None:
        display.flush()


class TrayApp:
    def __init__(self, ws: Workspace, host: str, port: int, shutdown_timeout: float,
                 credential: ConsoleCredential, autostart: Autostart,
                 start_gateway: bool = False, config_problem: str = "") -> None:
        self.pystray = load_pystray()
        self.ws = ws
        self.port = port
        self.credential = credential
        self.autostart = autostart
        self.start_gateway = start_gateway
        self.config_problem = config_problem
        self.keyring_problem = credential.problem()
        self.keyring_asked = False
        self.store = Store(ws.db_url)
        self.looping = False  # the icon's event loop runs (never, under the dummy backend)
        self.quitting = False
        self.last_notice = ""
        self.status = ""
        self.supervisor = GatewaySupervisor(ws, host, port, shutdown_timeout,
                                            on_change=self.refresh, notify=self.notify)
        self.icon = self.pystray.Icon("moltbot", draw_icon(State.STOPPED), "Moltbot",
                                      menu=self.build_menu())
        if not self.icon.HAS_MENU:
            log.warning("%s", NO_MENU)

    def build_menu(self) -> Any:
        item, separator = self.pystray.MenuItem, self.pystray.Menu.SEPARATOR
        running = lambda _item: self.supervisor.state is State.RUNNING  # noqa: E731
        idle = lambda _item: self.supervisor.state in (State.STOPPED, State.ERROR)  # noqa: E731
        return self.pystray.Menu(
            item(lambda _item: self.status, None, enabled=False),
            item(lambda _item: self.keyring_problem or "", None, enabled=False,
                 visible=lambda _item: bool(self.keyring_problem)),
            item(lambda _item: f"config.yaml: {self.config_problem}", None, enabled=False,
                 visible=lambda _item: bool(self.config_problem)),
            separator,
            item("Start gateway", self.start, enabled=idle, default=idle),
            item("Stop gateway", self.stop, enabled=lambda _item: not idle(_item)),
            item("Open console", self.open_console, enabled=running, default=running),
            item("Open workspace folder", self.open_workspace),
            item("Open logs", self.open_logs),
            separator,
            item("Start at login", self.toggle_autostart,
                 checked=lambda _item: self.autostart.is_enabled()),
            item("Quit", self.quit),
        )

    # menu actions -------------------------------------------------------------------------
    def start(self) -> None:
        self.supervisor.request_start()

    def stop(self) -> None:
        self.supervisor.request_stop()

    def open_console(self) -> None:
        running = self.supervisor.running
        if running is None:
            self.notify("Start the gateway first.")
            return
        if self.keyring_problem:
            self.notify(NO_KEYRING)
            webbrowser.open(f"{running.url}/")
            return
        if not self.keyring_asked:  # the keyring may now ask to be unlocked: say why first
            self.keyring_asked = True
            self.notify("Your keyring keeps the tray's console sign-in; unlock it if your "
                        "desktop asks.")
        try:
            link = console_link(running.url, self.credential)
        except KeyringError as e:  # none, locked and refused, no D-Bus session...
            self.keyring_problem = f"{NO_KEYRING} ({type(e).__name__})"
            if self.looping:
                self.icon.update_menu()  # the menu gains the keyring line
            self.notify(NO_KEYRING)
            link = f"{running.url}/"
        except (httpx.HTTPError, KeyError, ValueError) as e:
            log.warning("console sign-in failed: %s", e)
            self.notify(f"Could not sign the console in ({e}): sign in with "
                        f"`moltbot dashboard --token-gen`.")
            link = f"{running.url}/"
        webbrowser.open(link)

    def open_workspace(self) -> None:
        open_path(self.ws.root)

    def open_logs(self) -> None:
        log_file = self.ws.logs / "gateway.log"
        open_path(log_file if log_file.exists() else self.ws.logs)

    def toggle_autostart(self) -> None:
        if self.autostart.is_enabled():
            self.autostart.disable()
        else:
            self.autostart.enable(tray_command(self.ws.root, self.port))

    def quit(self) -> None:
        """Stop a gateway this tray started, leave one it found running, end the loop."""
        self.quitting = True
        self.supervisor.shutdown()
        self.store.close()
        if self.looping:
            self.icon.stop()
            flush_x11(self.icon)

    # state shown --------------------------------------------------------------------------
    def status_line(self) -> str:
        """ASCII only: pystray's X11 backend sets it as a Latin-1 window title."""
        state, port = self.supervisor.state, self.port
        today = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        count = self.store.count_messages_since(today)
        messages = f"{count} message{'s' if count != 1 else ''} today"
        if state is State.RUNNING:
            return f"Running on port {port} - {messages}"
        if state is State.STARTING:
            return f"Starting on port {port}..."
        if state is State.ERROR:
            return f"Error on port {port}: {self.supervisor.detail}"
        return f"Stopped (port {port}) - {messages}"

    def refresh(self) -> None:
        """After each look at the gateway: redraw the icon, title and menu when they change."""
        status = self.status_line()
        if status == self.status:
            return
        self.status = status
        self.icon.icon = draw_icon(self.supervisor.state)
        self.icon.title = f"Moltbot: {status}"
        if self.looping:
            self.icon.update_menu()

    def notify(self, message: str) -> None:
        """Tell the user: a desktop notification where the backend has one, and the log."""
        self.last_notice = message
        log.info("%s", message)
        if self.looping and self.icon.HAS_NOTIFICATION:
            self.icon.notify(message, "Moltbot")

    # running ------------------------------------------------------------------------------
    def begin(self) -> None:
        """Find the gateway's state and start watching it (and start it, if asked to)."""
        self.supervisor.begin(start_now=self.start_gateway)
        self.refresh()

    def run(self) -> None:
        """The icon's event loop on this (the main) thread, until Quit."""
        def setup(icon: Any) -> None:
            icon.visible = True
            self.looping = True
            self.begin()

        try:
            self.icon.run(setup=setup)
        except Exception:
            # pystray's GTK backend withdraws its last notification on the way out and fails
            # where the desktop runs no notification service; by then everything is stopped.
            if not self.quitting:
                raise
            log.debug("the tray's backend failed on its way out, after Quit", exc_info=True)
