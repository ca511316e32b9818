"""The console's Schedules page API: every reminder and skill schedule, and cancelling one.

`GET /api/v1/schedules` (`?all=1` adds the finished ones) answers `{"schedules": [...],
"zone", "now"}`, each row with its next run in the gateway's zone and its last run's state;
`POST /api/v1/schedules/<id>/cancel` cancels. Both pass the console's door (its token or
login) and follow the console's switch, like the console's other APIs.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from gateway.assistant.scheduler import Scheduler
from gateway.core.entry import Entry
from gateway.observe.audit import audit
from gateway.web.door import guarded, switched_on
from gateway.web.errors import error_response


def build_schedules_api(entry: Entry, scheduler: Scheduler, channel: str,
                        is_on: Callable[[], bool]) -> Blueprint:
    bp = Blueprint("console_schedules", __name__)

    bp.before_request(switched_on(is_on, "console", "channels.console.enabled"))

    bp.before_request(guarded(entry, channel))

    @bp.get("/api/v1/schedules")
    def listing() -> ResponseReturnValue:
        zone = scheduler.zone()
        rows = scheduler.rows.listing(everything=request.args.get("all") == "1")
        return jsonify({"schedules": [scheduler.rows.describe(r, zone) for r in rows],
                        "zone": zone.key, "now": scheduler.seen})

    @bp.post("/api/v1/schedules/<schedule_id>/cancel")
    def cancel(schedule_id: str) -> ResponseReturnValue:
        row = scheduler.cancel(schedule_id)
        if row is None:
            return error_response("not_found", f"No waiting reminder or schedule "
                                  f"{schedule_id}: check the id (moltbot schedules list).")
        audit("schedule.cancelled", actor=request.environ.get("moltbot.principal", ""),
              schedule=schedule_id, owner=row.owner)
        return jsonify({"cancelled": schedule_id})

    return bp
