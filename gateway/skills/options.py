"""`skills:` in config.yaml: time limits, host processes and the environment skills get."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from gateway.common.options import Duration, Section

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SkillsConfig(Section):
    timeout: Duration = 30.0
    host_processes: int = Field(2, ge=1, le=16)
    env: dict[str, str] = Field(
        default_factory=dict, description="environment variables skills get, e.g. "
        "{WEATHER_KEY: \"${WEATHER_KEY}\"}; nothing else of the gateway's reaches them")

    @field_validator("env")
    @classmethod
    def _variable_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a variable name: letters, digits and _, "
                                 "not starting with a digit")
        return env
