"""`GET /healthz`: answered whatever channels are switched on, for the CLI, the tray,
installers and container health checks. It says nothing but that the gateway runs."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from gateway import __version__

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify({"status": "ok", "version": __version__})
