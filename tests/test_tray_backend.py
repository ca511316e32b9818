"""The tray's backend choice for each kind of Linux desktop, and on this machine's real one.

`choose` gets a `Desktop` (what `look()` finds: typelibs installed, tray hosts running). The
real tray under Xvfb + trayer (test_tray_xvfb) runs the whole default path; here every other
kind of desktop is described to the same function, since one machine has one set of typelibs.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from desktop.backend import Choice, Desktop, choose
from tests.conftest import ROOT

GNOME_WITH_EXTENSION = Desktop(True, True, True, sni_host=True, xembed_tray=False)
GNOME_WITHOUT_EXTENSION = Desktop(True, True, True, sni_host=False, xembed_tray=False)
PLAIN_X_TRAY_WITH_TYPELIB = Desktop(True, True, True, sni_host=False, xembed_tray=True)
PLAIN_X_TRAY_NO_TYPELIB = Desktop(True, True, False, sni_host=False, xembed_tray=True)
KDE_NO_TYPELIB = Desktop(True, True, False, sni_host=True, xembed_tray=True)
NO_PYGOBJECT = Desktop(False, False, False, sni_host=True, xembed_tray=True)


@pytest.mark.parametrize(("desktop", "backend"), [
    (GNOME_WITH_EXTENSION, "appindicator"),
    (GNOME_WITHOUT_EXTENSION, "appindicator"),  # shows once the extension is switched on
    (PLAIN_X_TRAY_WITH_TYPELIB, "gtk"),  # pystray chose AppIndicator here: no icon at all
    (PLAIN_X_TRAY_NO_TYPELIB, "gtk"),  # pystray died here: ValueError, not ImportError
    (KDE_NO_TYPELIB, "gtk"),
    (NO_PYGOBJECT, "xorg"),
])
def test_each_desktop_gets_a_backend_that_shows_there(desktop: Desktop, backend: str) -> None:
    choice = choose(desktop, environ={}, platform="linux")
    assert choice.name == backend and choice.why


def test_without_pygobject_the_reason_says_what_to_install() -> None:
    choice = choose(NO_PYGOBJECT, environ={}, platform="linux")
    assert "PyGObject is missing" in choice.why and "install.sh --desktop" in choice.why
    assert "pip install moltbot" not in choice.why


def test_the_users_own_choice_and_other_systems() -> None:
    assert choose(NO_PYGOBJECT, environ={"PYSTRAY_BACKEND": "gtk"}) == Choice(
        "gtk", "PYSTRAY_BACKEND is set")
    for platform in ("win32", "darwin"):
        assert choose(NO_PYGOBJECT, environ={}, platform=platform).name is None


def test_importing_pystray_where_it_failed() -> None:
    """A real X display with no tray host yet and this machine's typelibs (PyGObject, GTK and
    AppIndicator, as test.sh installs them): the choice is made, pystray imports with it in a
    fresh process, and the variable that carried the choice does not stay behind."""
    pytest.importorskip("gi")
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "320x240x24",
                             "-nolisten", "tcp"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert xvfb.stdout is not None
        env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY",
                                                                   "PYSTRAY_BACKEND")}
        env["DISPLAY"] = f":{xvfb.stdout.readline().strip()}"
        code = ("import os; from desktop.backend import choose, import_pystray; c = choose(); "
                "p = import_pystray(c); print(c.name, p.Icon.__module__, "
                "'PYSTRAY_BACKEND' in os.environ)")
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    finally:
        xvfb.terminate()
        xvfb.wait(10)
        if xvfb.stdout is not None:
            xvfb.stdout.close()
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["appindicator", "pystray._appindicator", "False"]
