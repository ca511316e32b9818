"""Entry point of the bundled app (`dist/moltbot/moltbot`, PyInstaller one-folder).

A frozen app has no `python`: `sys.executable` is this binary. The gateway still starts its
processes as `[sys.executable, "-m", "gateway.server", ...]` (`moltbot gateway start`),
`[sys.executable, "-m", "gateway.skills.host"]` (skill hosts), `-m gateway.live.watcher_child`
(the file watcher) and `-m gateway.mcp.host` (the MCP tool servers' clients), so this entry
understands `-m` for those modules and runs them as `python -m` would. Anything else is the
`moltbot` command line, and no argument at all (a double-click) is the tray.

Nothing is imported before the dispatch: `gateway.server` must monkey-patch with gevent before
socket, ssl or threading are imported.
"""

from __future__ import annotations

import runpy
import sys

RUNNABLE_MODULES = ("gateway.server", "gateway.skills.host", "gateway.live.watcher_child",
                    "gateway.mcp.host", "gateway.channels.feishu_ws_host",
                    "gateway.channels.slack_socket", "gateway.tools.browser_host", "gateway",
                    "desktop", "gateway.channels.dingtalk_stream_host")
"""What `-m` may run: the gateway's own child processes, the CLI and the tray."""


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["-m"]:
        module = args[1] if len(args) > 1 else ""
        if module not in RUNNABLE_MODULES:
            sys.exit(f"moltbot: -m runs one of {', '.join(RUNNABLE_MODULES)}, not {module!r}")
        sys.argv = [sys.argv[0], *args[2:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return
    if not args:
        run_tray()
        return
    from gateway.cli import main as cli

    cli()


def run_tray() -> None:
    """The tray app, as a double-click starts it."""
    try:
        from desktop.__main__ import main as tray
    except ImportError as e:
        sys.exit(f"moltbot: this build has no tray app ({e}). Use the command line: "
                 f"{sys.argv[0]} --help")
    tray()


if __name__ == "__main__":
    main()
