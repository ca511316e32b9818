"""Start at login: the one switch each OS offers a user program without admin rights.

Linux: an XDG autostart entry (`~/.config/autostart/moltbot.desktop`, the one name: the tray's
menu and `install.sh --desktop`, through `python -m desktop --autostart on`, both write it);
Windows: a value under HKCU's Run key; macOS: a LaunchAgent plist (`~/Library/LaunchAgents`),
loaded by launchd at the next login. Each is given the tray's full command line
(`tray_command`), which names the workspace and port as options, so the same tray comes back
with no environment to carry.
"""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from pathlib import Path
from typing import Protocol

NAME = "moltbot"
LABEL = "ai.moltbot.tray"


class Autostart(Protocol):
    def is_enabled(self) -> bool: ...
    def enable(self, argv: list[str]) -> None: ...
    def disable(self) -> None: ...
    def where(self) -> str: ...


def desktop_exec(argv: list[str]) -> str:
    """An Exec= value: each argument quoted as the Desktop Entry spec asks (`"`, `` ` ``, `$`
    and `\\` escaped inside double quotes; `%` doubled, as it would start a field code)."""
    def quote(arg: str) -> str:
        arg = arg.replace("%", "%%")
        if arg and not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`'):
            return arg
        escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
        return f'"{escaped}"'
    return " ".join(quote(a) for a in argv)


class XdgAutostart:
    def __init__(self, config_home: Path | None = None) -> None:
        base = config_home or Path(os.environ.get("XDG_CONFIG_HOME") or "~/.config").expanduser()
        self.path = base / "autostart" / f"{NAME}.desktop"

    def is_enabled(self) -> bool:
        return self.path.exists()

    def where(self) -> str:
        return str(self.path)

    def enable(self, argv: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(
            "[Desktop Entry]\nType=Application\nName=Moltbot\n"
            "Comment=Your private AI assistant gateway (tray)\n"
            f"Exec={desktop_exec(argv)}\nIcon=moltbot\nTerminal=false\n"
            "X-GNOME-Autostart-enabled=true\n", encoding="utf-8")

    def disable(self) -> None:
        self.path.unlink(missing_ok=True)


class LaunchAgent:
    def __init__(self, home: Path | None = None) -> None:
        self.path = (home or Path.home()) / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    def is_enabled(self) -> bool:
        return self.path.exists()

    def where(self) -> str:
        return str(self.path)

    def enable(self, argv: list[str]) -> None:
        agent = {"Label": LABEL, "ProgramArguments": argv, "RunAtLoad": True,
                 "ProcessType": "Interactive"}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(plistlib.dumps(agent))

    def disable(self) -> None:
        self.path.unlink(missing_ok=True)


class WindowsRunKey:
    KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
    VALUE = "Moltbot"

    def where(self) -> str:
        return f"HKEY_CURRENT_USER\\{self.KEY}\\{self.VALUE}"

    def is_enabled(self) -> bool:
        import winreg  # type: ignore[import-not-found,unused-ignore]

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, self.KEY) as key:
                winreg.QueryValueEx(key, self.VALUE)
            return True
        except FileNotFoundError:
            return False

    def enable(self, argv: list[str]) -> None:
        import winreg  # type: ignore[import-not-found,unused-ignore]

        with winreg.CreateKey(winreg.HKEY_CURRENT_USER, self.KEY) as key:
            winreg.SetValueEx(key, self.VALUE, 0, winreg.REG_SZ, subprocess.list2cmdline(argv))

    def disable(self) -> None:
        import winreg  # type: ignore[import-not-found,unused-ignore]

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, self.KEY, 0,
                                winreg.KEY_SET_VALUE) as key:
                winreg.DeleteValue(key, self.VALUE)
        except FileNotFoundError:
            pass


def autostart_for_platform() -> Autostart:
    if sys.platform == "win32":
        return WindowsRunKey()
    if sys.platform == "darwin":
        return LaunchAgent()
    return XdgAutostart()


def tray_command(home: Path, port: int | None) -> list[str]:
    """How to launch this same tray again, starting the gateway with it. `-m desktop` works for
    a source install and for the bundled app, whose binary runs `-m desktop` as python would
    (installers/launcher.py)."""
    return [sys.executable, "-m", "desktop", "--home", str(home),
            *(["--port", str(port)] if port else []), "--start"]
