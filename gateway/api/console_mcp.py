"""The MCP tool servers as the running gateway sees them, for the console and `moltbot mcp
list`: each server's state (running, starting, failed with why, stopped), its tools, the
ones the model is offered, and how often it was restarted. Never its headers or env."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from gateway.channels.base import Services
from gateway.web.door import guarded


def build_console_mcp(services: Services, channel: str) -> Blueprint:
    bp = Blueprint("console_mcp", __name__)
    bp.before_request(guarded(services.entry, channel))

    @bp.get("/api/v1/mcp")
    def servers() -> ResponseReturnValue:
        return jsonify({"servers": services.mcp_listing()})

    return bp
