"""Every error the gateway answers over HTTP has one shape: {"error": {"code", "message"}}."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 413: "payload_too_large", 429: "rate_limited",
          500: "internal_error", 503: "unavailable"}


def error_response(status: int, code: str, message: str, **extra: Any) -> ResponseReturnValue:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    body.update(extra)
    return jsonify(body), status


def register_error_handlers(app: Flask, max_body: int) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> ResponseReturnValue:
        status = e.code or 500
        message = e.description or e.name
        if status == 413:
            message = f"The request body is larger than {max_body} bytes (gateway.max_body_bytes)."
        return error_response(status, _CODES.get(status, "error"), message)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> ResponseReturnValue:
        app.logger.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong inside the gateway;"
                              " the details are in data/logs/error.log.")
