"""`tools:` in config.yaml: what skills and the model may run, reach and read."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from gateway.common.options import Duration, Section


class ToolsConfig(Section):
    """What skills and the model may do beyond talking: every list is closed when empty."""

    allowed_commands: list[str] = Field(default_factory=list)
    command_timeout: Duration = 30.0
    allowed_hosts: list[str] = Field(default_factory=list)
    http_timeout: Duration = 10.0
    max_bytes: int = Field(1024 * 1024, ge=1024)
    offer_to_model: list[Literal["files", "command", "http"]] = Field(
        default_factory=list, description="tools the model may call itself (skills always may)")
    model_read: list[str] = Field(default_factory=lambda: ["knowledge", "files"],
                                  description="workspace folders the model's files tool reads")
    model_write: list[str] = Field(default_factory=lambda: ["files"],
                                   description="workspace folders the model's files tool writes")

    @field_validator("model_read", "model_write")
    @classmethod
    def _not_what_runs_the_model(cls, folders: list[str]) -> list[str]:
        """The model is not trusted: it may never touch the code and secrets that run it."""
        for folder in folders:
            parts = Path(folder).parts
            if not parts or Path(folder).is_absolute() or ".." in parts or parts[0] == ".":
                raise ValueError(f"{folder!r}: name a folder inside the workspace, such as "
                                 "'knowledge' or 'files'")
            if parts[0] in ("skills", "data", "config.yaml") or parts[0].startswith("."):
                raise ValueError(f"{folder!r}: the model may never read or write skills/, "
                                 "data/, config.yaml or hidden files: they are the code and "
                                 "the secrets that run it")
        return folders
