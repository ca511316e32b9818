"""Which pystray backend can show the tray on this desktop, decided before pystray is imported.

pystray tries AppIndicator, then GTK, then plain X11, but moves on only when a backend's import
raises ImportError. With PyGObject installed and no AppIndicator typelib, its import raises
ValueError ("Namespace AyatanaAppIndicator3 not available") and `moltbot tray` died; with the
typelib but no StatusNotifier host (GNOME without the AppIndicator extension, a plain X tray
such as trayer or stalonetray) the icon was registered and never shown. So we look first:

- AppIndicator: its typelib is there and a StatusNotifier host owns its D-Bus name;
- GTK: GTK 3's typelib is there and an XEmbed tray owns `_NET_SYSTEM_TRAY_S<screen>`, or no
  host of either kind answers (GTK still gives a menu once one appears);
- AppIndicator again when only it is installed and a host may come later (GNOME's extension);
- plain X11 (icon only, no menu) when PyGObject or GTK's typelib is missing.

A `PYSTRAY_BACKEND` the user set is obeyed. Windows and macOS have one backend each.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

APPINDICATOR_NAMESPACES = ("AyatanaAppIndicator3", "AppIndicator3")
SNI_WATCHER = "org.kde.StatusNotifierWatcher"
INSTALL_GTK = ("install PyGObject (install.sh --desktop does it) with apt-get install "
               "gir1.2-gtk-3.0 for a menu")


@dataclass(frozen=True)
class Choice:
    """A pystray backend name (None: pystray's own, the only one there is) and why."""

    name: str | None
    why: str


@dataclass(frozen=True)
class Desktop:
    """What the choice depends on; `look()` finds it out, tests may build one."""

    has_gi: bool
    has_gtk: bool
    has_appindicator: bool
    sni_host: bool
    xembed_tray: bool


def choose(desktop: Desktop | Callable[[], Desktop] | None = None,
           environ: dict[str, str] | None = None, platform: str = sys.platform) -> Choice:
    env = os.environ if environ is None else environ
    if env.get("PYSTRAY_BACKEND"):
        return Choice(env["PYSTRAY_BACKEND"], "PYSTRAY_BACKEND is set")
    if platform in ("win32", "darwin"):
        return Choice(None, "the system's own tray")
    found = desktop() if callable(desktop) else (desktop or look())
    if not (found.has_gi and found.has_gtk):
        missing = "PyGObject" if not found.has_gi else "GTK 3's typelib"
        return Choice("xorg", f"{missing} is missing: the icon shows, without a menu; "
                              f"{INSTALL_GTK}")
    if found.has_appindicator and found.sni_host:
        return Choice("appindicator", "a StatusNotifier host (AppIndicator) is running")
    if found.xembed_tray:
        return Choice("gtk", "an XEmbed system tray is running")
    if found.has_appindicator:
        return Choice("appindicator", "no tray host answers yet; AppIndicator shows once one "
                                      "starts (on GNOME: the AppIndicator extension)")
    return Choice("gtk", "no tray host answers yet; GTK's icon shows once an XEmbed tray "
                         "starts (on GNOME: the AppIndicator extension)")


def look() -> Desktop:
    """This session's desktop: the typelibs installed, and which tray hosts run now."""
    try:
        import gi

        gi.require_version("GIRepository", "2.0")
        from gi.repository import GIRepository
    except (ImportError, ValueError):
        return Desktop(False, False, False, False, _xembed_tray())
    repo = GIRepository.Repository.get_default()
    has = lambda ns: bool(repo.enumerate_versions(ns))  # noqa: E731
    return Desktop(True, has("Gtk"), any(has(ns) for ns in APPINDICATOR_NAMESPACES),
                   _sni_host(), _xembed_tray())


def _sni_host() -> bool:
    """Does a StatusNotifierWatcher own its name on the session bus?"""
    try:
        from gi.repository import Gio, GLib

        bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
        answer = bus.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus",
                               "org.freedesktop.DBus", "NameHasOwner",
                               GLib.Variant("(s)", (SNI_WATCHER,)), GLib.VariantType("(b)"),
                               Gio.DBusCallFlags.NONE, 2000, None)
        return bool(answer.unpack()[0])
    except Exception:  # no session bus, no GLib: no host we could use
        return False


def _xembed_tray() -> bool:
    """Does an XEmbed system tray own this screen's tray selection?"""
    try:
        from Xlib import X, display

        d = display.Display()
        try:
            atom = d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}")
            return d.get_selection_owner(atom) != X.NONE
        finally:
            d.close()
    except Exception:  # no X display (Wayland only, or none): no XEmbed tray
        return False


def import_pystray(choice: Choice) -> object:
    """pystray with `choice`'s backend: it picks one at import time, from the environment
    only, so the variable is set for the import and taken back after it."""
    if choice.name is None or os.environ.get("PYSTRAY_BACKEND"):
        import pystray

        return pystray
    os.environ["PYSTRAY_BACKEND"] = choice.name
    try:
        import pystray
    finally:
        del os.environ["PYSTRAY_BACKEND"]
    return pystray


def doctor_check() -> tuple[bool, str, str]:
    """`moltbot doctor`'s line: which backend `moltbot tray` would use in this session, and
    why; (ok, what, fix)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        return (True, "tray: no desktop session here (run doctor from your desktop to check "
                      "the tray)", "")
    choice = choose()
    what = f"tray: backend {choice.name or 'of the system'}: {choice.why}"
    if choice.name == "xorg":
        return (False, what, "./installers/install.sh --desktop")
    return (True, what, "")
