"""`moltbot schedules list|cancel`: reminders and skill schedules, read and cancelled in the
workspace's store, so they work whether the gateway runs or not (a running gateway reads the
row again before each run, so a cancelled one is never sent)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from gateway.assistant.schedule_store import ScheduleStore
from gateway.cli.shared import _config, _fail
from gateway.common.workspace import Workspace, default_workspace
from gateway.observe.audit import audit


@contextmanager
def _rows(ws: Workspace) -> Iterator[ScheduleStore]:
    from gateway.core.outbox_store import OutboxStore
    from gateway.core.store import Store

    if not Path(ws.data / "moltbot.db").exists():
        _fail(f"No store in {ws.data}: the gateway has not run in this workspace.")
    store = Store(ws.db_url)
    try:
        yield ScheduleStore(store, OutboxStore(store))
    finally:
        store.close()


@click.group()
def schedules() -> None:
    """Reminders people set and the schedules skills declare."""


@schedules.command("list")
@click.option("--all", "everything", is_flag=True, help="Finished and cancelled ones too.")
@click.option("--json", "as_json", is_flag=True)
def schedules_list(everything: bool, as_json: bool) -> None:
    """Id, owner (channel:sender, or the skill), next run in gateway.timezone, where it goes,
    and what became of its last run."""
    ws = default_workspace()
    zone = ZoneInfo(_config(ws).gateway.timezone)
    with _rows(ws) as rows:
        found = [rows.describe(r, zone) for r in rows.listing(everything=everything)]
    if as_json:
        click.echo(json.dumps({"schedules": found, "zone": zone.key}, ensure_ascii=False))
        return
    if not found:
        click.echo("No reminders or schedules (set one with /remind in a chat).")
        return
    click.echo(f"{'ID':<10} {'OWNER':<26} {'NEXT (' + zone.key + ')':<22} {'WHERE':<22} "
               f"{'STATE':<9} {'LAST':<8} WHAT")
    for r in found:
        what = " ".join(filter(None, (r["text"], f"(cron '{r['cron']}')" if r["cron"] else "")))
        click.echo(f"{r['id']:<10} {r['skill'] or r['owner']:<26} {r['next_local'] or '-':<22} "
                   f"{r['channel'] + ':' + r['chat']:<22} {r['state']:<9} "
                   f"{r['last_state'] or '-':<8} {what}".rstrip())


@schedules.command("cancel")
@click.argument("schedule_id")
def schedules_cancel(schedule_id: str) -> None:
    """Cancel a waiting reminder or skill schedule by its id (a skill's stays cancelled
    until its declaration changes)."""
    ws = default_workspace()
    with _rows(ws) as rows:
        row = rows.cancel(schedule_id)
    if row is None:
        _fail(f"No waiting reminder or schedule {schedule_id} (moltbot schedules list).")
    audit("schedule.cancelled", actor="cli", schedule=schedule_id, owner=row.owner)
    click.echo(f"Cancelled {schedule_id}: {row.text or row.skill}")
