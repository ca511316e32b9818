"""The browser tool's screenshots for the console: the trace replay shows a `browser:screenshot`
span with a link here. Only PNG files directly in `files/browser/`, by name (no path, no `..`),
to a signed-in console user.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, send_file
from flask.typing import ResponseReturnValue

from gateway.core.entry import Entry
from gateway.web.door import guarded, switched_on
from gateway.web.errors import error_response

SHOT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}\.png$")  # the browser tool's names
FOLDER = "files/browser"


def build_console_browser(entry: Entry, workspace: Path, channel: str,
                          is_on: Callable[[], bool]) -> Blueprint:
    bp = Blueprint("console_browser", __name__)
    bp.before_request(switched_on(is_on, "console", "channels.console.enabled"))
    bp.before_request(guarded(entry, channel))

    @bp.get("/api/v1/browser/shots/<name>")
    def shot(name: str) -> ResponseReturnValue:
        folder = (workspace / FOLDER).resolve()
        path = (folder / name).resolve() if SHOT.match(name) else None
        if path is None or path.parent != folder or not path.is_file():
            return error_response("not_found", f"No screenshot {name[:100]!r} in {FOLDER}/.")
        return send_file(path, mimetype="image/png", max_age=0)

    return bp
