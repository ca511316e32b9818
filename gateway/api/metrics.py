"""`GET /metrics` (Prometheus text) and `GET /api/v1/stats` (the live window as JSON).

Both answer a loopback client, or a request `authorize(request)` accepts (the composition root
passes the gateway's token check). A request that came through a reverse proxy carries
X-Forwarded-For, Forwarded or X-Real-IP and is not treated as loopback, whatever its socket
says: behind nginx every request comes from 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Request, Response, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.common.options import is_loopback
from gateway.observe.metrics import Metrics
from gateway.web.errors import error_response

_PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def is_direct_loopback(req: Request) -> bool:
    """The client is on this machine and talked to us directly, not through a proxy."""
    if any(h in req.headers for h in _PROXY_HEADERS):
        return False
    return is_loopback(req.remote_addr or "")


def build_metrics_api(metrics: Metrics, authorize: Callable[[Request], bool], *,
                      allow_loopback: bool = True) -> Blueprint:
    bp = Blueprint("metrics", __name__)

    @bp.before_request
    def _allowed() -> ResponseReturnValue | None:
        if (allow_loopback and is_direct_loopback(request)) or authorize(request):
            return None
        return error_response("unauthorized", "Metrics need `Authorization: Bearer "
                              "<token>` (moltbot dashboard --token-gen) unless asked from "
                              "this machine.")

    @bp.get("/metrics")
    def prometheus() -> ResponseReturnValue:
        body, content_type = metrics.exposition(request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    @bp.get("/api/v1/stats")
    def stats() -> ResponseReturnValue:
        raw = request.args.get("window", "60")
        size = metrics.window.size
        try:
            seconds = float(raw)
        except ValueError:
            seconds = 0.0
        if not 1 <= seconds <= size:
            return error_response("bad_request", f"window must be a number of seconds "
                                  f"from 1 to {size}, got {raw!r}.")
        return jsonify(metrics.snapshot(seconds))

    return bp
