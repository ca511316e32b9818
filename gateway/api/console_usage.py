"""Token usage for the console: prompt and completion tokens per day, model and channel, as
the model counted them (recorded with each answered message), as JSON or CSV."""

from __future__ import annotations

import csv
import io
import time

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.channels.base import Services
from gateway.web.door import guarded
from gateway.web.errors import error_response

MAX_DAYS = 366
COLUMNS = ("day", "model", "channel", "messages", "prompt", "completion")


def build_console_usage(services: Services, channel: str) -> Blueprint:
    bp = Blueprint("console_usage", __name__)
    bp.before_request(guarded(services.entry, channel))

    @bp.get("/api/v1/usage")
    def usage() -> ResponseReturnValue:
        raw = request.args.get("days", "30")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
            return error_response("bad_request", f"days must be a whole number from 1 to "
                                  f"{MAX_DAYS}, got {raw!r}.")
        since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - (int(raw) - 1) * 86400))
        rows = services.store.token_usage(since)
        if request.args.get("format") != "csv":
            return jsonify({"since": since, "rows": rows})
        out = io.StringIO()
        writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return Response(out.getvalue(), content_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="moltbot-tokens-since-{since}.csv"'})

    return bp
