"""The console's files: one HTML shell at `/`, its scripts, styles and vendored libraries
under `/console/`. No build step and no CDN, so it works offline; the strict CSP allows
nothing but our own origin (no inline scripts or styles in the markup)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory
from flask.typing import ResponseReturnValue

CSP = ("default-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def console_page(webui: Path) -> Response:
    """The shell every console page starts from (the pages are drawn by its modules)."""
    response = send_from_directory(webui / "console", "index.html")
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-cache"
    return response


def build_console_assets(webui: Path) -> Blueprint:
    bp = Blueprint("console_assets", __name__)

    @bp.get("/console/<path:name>")
    def asset(name: str) -> ResponseReturnValue:
        response = send_from_directory(webui / "console", name)
        response.headers["Cache-Control"] = "no-cache"  # a new version shows on reload
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return bp
