"""`tools:` in config.yaml: what skills and the model may run, reach and read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from gateway.common.options import Duration, Section

STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$")
# keys the gateway's hosted tools read (`hosted.py`), not `build_tools`
HOSTED_KEYS = {"browser_timeout", "browser_pages", "compose", "compose_idle", "compose_timeout"}


class ToolsConfig(Section):
    """What skills and the model may do beyond talking: every list is closed when empty."""

    allowed_commands: list[str] = Field(default_factory=list)
    command_timeout: Duration = 30.0
    allowed_hosts: list[str] = Field(default_factory=list)
    http_timeout: Duration = 10.0
    max_bytes: int = Field(1024 * 1024, ge=1024)
    browser_timeout: Duration = Field(15.0, gt=0, le=300,
                                      description="seconds each browser step may take")
    browser_pages: int = Field(4, ge=1, le=32, description="browser calls open at once")
    compose: dict[str, str] = Field(default_factory=dict, description="Compose stacks skills "
                                    "may run: name -> compose file inside the workspace")
    compose_idle: Duration = Field(600.0, gt=0, description="a stack unused this long is "
                                   "taken down")
    compose_timeout: Duration = Field(300.0, gt=0, description="seconds `up` and `down` may "
                                      "take")
    offer_to_model: list[Literal["files", "command", "http", "browser"]] = Field(
        default_factory=list, description="tools the model may call itself (skills always may)")
    model_read: list[str] = Field(default_factory=lambda: ["knowledge", "files"],
                                  description="workspace folders the model's files tool reads")
    model_write: list[str] = Field(default_factory=lambda: ["files"],
                                   description="workspace folders the model's files tool writes")

    @field_validator("compose")
    @classmethod
    def _stacks_in_the_workspace(cls, stacks: dict[str, str]) -> dict[str, str]:
        """A stack is a file the owner put in the workspace, never one the model can write."""
        for name, path in stacks.items():
            parts = Path(path).parts
            if not STACK_NAME.match(name):
                raise ValueError(f"{name!r}: a stack's name is letters, digits, '-' and '_'")
            if not parts or Path(path).is_absolute() or ".." in parts:
                raise ValueError(f"{name}: {path!r}: give the compose file's path inside the "
                                 "workspace, e.g. tools/ocr/compose.yaml")
            if parts[0] in ("files", "data", "knowledge", "memory") or not path.endswith(
                    (".yaml", ".yml")):
                raise ValueError(f"{name}: {path!r}: a compose file (.yaml) outside files/, "
                                 "data/, knowledge/ and memory/ (what people and the model "
                                 "write), e.g. tools/ocr/compose.yaml")
        return stacks

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
