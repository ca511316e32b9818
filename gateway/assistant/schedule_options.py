"""`schedules:` in config.yaml: what happens to runs missed while the gateway was down.
(The time zone reminders are read in is `gateway.timezone`.)"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.common.options import Section


class SchedulesConfig(Section):
    missed: Literal["run_once", "skip"] = Field(
        "run_once", description="a reminder or schedule whose time passed while the gateway "
        "was down: run_once sends it (once, however many runs were missed) at start; skip "
        "drops it (a repeating one goes on from its next time)")
