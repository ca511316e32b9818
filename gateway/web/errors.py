"""Every error the gateway answers over HTTP has one shape: {"error": {"code", "message"}}.

The pipeline and the guards speak in error *codes* (`gateway.core.message.ERROR_CODES`); this is
where HTTP turns a code into a status (and `retry_after` into a Retry-After header).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

HTTP_STATUS: dict[str, int] = {
    "bad_request": 400, "unauthorized": 401, "forbidden": 403, "blocked": 403,
    "not_found": 404,
    "method_not_allowed": 405, "request_timeout": 408, "payload_too_large": 413,
    "rate_limited": 429,
    "cancelled": 499, "internal_error": 500, "skill_error": 500, "model_error": 502,
    "model_unavailable": 503, "busy": 503, "shutting_down": 503, "unavailable": 503,
}
_CODES = {status: code for code, status in reversed(HTTP_STATUS.items())}


def error_response(code: str, message: str, retry_after: float | None = None,
                   **extra: Any) -> ResponseReturnValue:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    body.update(extra)
    headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after else {}
    return jsonify(body), HTTP_STATUS.get(code, 500), headers


def register_error_handlers(app: Flask, max_body: int) -> None:
    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> ResponseReturnValue:
        status = e.code or 500
        message = e.description or e.name
        if status == 413:
            message = f"The request body is larger than {max_body} bytes (gateway.max_body_bytes)."
        return error_response(_CODES.get(status, "bad_request" if status < 500
                                         else "internal_error"), message)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> ResponseReturnValue:
        log.exception("unhandled error")
        return error_response("internal_error", "Something went wrong inside the gateway; "
                              "the details are in data/logs/error.log.")
