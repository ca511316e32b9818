"""`python -m desktop` (and the bundled app's entry point): the tray. `moltbot tray` runs the same.

Exit codes: 0 after Quit, 1 when no tray can be shown here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from desktop.autostart import autostart_for_platform, tray_command
from desktop.credential import ConsoleCredential
from desktop.tray import TrayApp, TrayUnavailable
from gateway.common.options import ConfigError
from gateway.common.private import private_umask
from gateway.common.secrets import lookup_secret
from gateway.common.workspace import default_workspace, ensure_workspace
from gateway.config import load_config
from gateway.ops.control import DEFAULTS


def build_tray(home: Path | None, port: int | None, start: bool) -> TrayApp:
    """The tray for a workspace (default `$MOLTBOT_HOME`) and port (default config.yaml's).

    An invalid config.yaml does not stop the tray: the menu shows the problem, and Start then
    reports the gateway's own refusal.
    """
    if home:
        os.environ["MOLTBOT_HOME"] = str(home)  # the gateway it starts inherits it
    ws = default_workspace()
    ensure_workspace(ws)
    try:
        settings, problem = load_config(ws.config_path, lookup_secret).gateway, ""
    except ConfigError as e:
        more = f" (and {len(e.problems) - 1} more)" if len(e.problems) > 1 else ""
        settings, problem = DEFAULTS, e.problems[0] + more
    return TrayApp(ws, settings.host, port or settings.port, settings.shutdown_timeout,
                   ConsoleCredential(ws), autostart_for_platform(), start_gateway=start,
                   config_problem=problem)


def switch_autostart(on: bool, home: Path | None, port: int | None) -> int:
    """The same entry the menu's "Start at login" writes, so the installer and the tray agree
    on its name and place; prints where it is."""
    autostart = autostart_for_platform()
    if on:
        autostart.enable(tray_command((home or default_workspace().root).resolve(), port))
    else:
        autostart.disable()
    print(autostart.where())
    return 0


def setup_logging() -> None:
    """What the tray says goes to its stderr: its own notices, not a line per /healthz poll."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moltbot tray", description=__doc__)
    parser.add_argument("--home", type=Path, help="workspace (default: $MOLTBOT_HOME)")
    parser.add_argument("--port", type=int, help="gateway port (default: gateway.port)")
    parser.add_argument("--start", action="store_true", help="start the gateway at once")
    parser.add_argument("--autostart", choices=("on", "off"),
                        help="only switch the tray's start at login on or off (what the menu "
                             "item does; install.sh --desktop uses it), then exit")
    args = parser.parse_args(argv)
    private_umask()  # the workspace and store the tray may create are the owner's alone
    if args.autostart:
        return switch_autostart(args.autostart == "on", args.home, args.port)
    setup_logging()
    try:
        tray = build_tray(args.home, args.port, args.start)
    except TrayUnavailable as e:
        print(e, file=sys.stderr)
        return 1
    tray.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
