"""Build the tool set from plain config values, in one place.

Plain arguments rather than the config object keep this folder free of imports from the rest
of the gateway: the composition root reads the `tools:` section and passes the values here.
Every tool is built even when its allowlist is empty, so a call is answered with a refusal
that tells the user which config.yaml key to set, instead of an unknown-tool error.
"""

from __future__ import annotations

from pathlib import Path

from gateway.tools.base import Tool
from gateway.tools.command import CommandTool, Confinement
from gateway.tools.files import FileScope, FilesTool
from gateway.tools.http import HttpTool


def build_tools(
    workspace: Path,
    *,
    allowed_commands: list[str],
    command_timeout: float,
    allowed_hosts: list[str],
    http_timeout: float,
    max_bytes: int,
    files_scope: FileScope | None = None,
    confinement: Confinement | None = None,
) -> dict[str, Tool]:
    """Return the tools keyed by the name the model calls them by.

    Files are confined to `workspace` (and to `files_scope` inside it, for the model),
    commands run there (for the model: in `confinement`'s sandbox); `max_bytes` caps both
    file sizes and HTTP bodies. Bad values raise ValueError naming the config key.
    """
    tools: list[Tool] = [
        FilesTool(workspace, max_bytes=max_bytes, scope=files_scope),
        CommandTool(allowed_commands, timeout=command_timeout, cwd=workspace,
                    confinement=confinement),
        HttpTool(allowed_hosts, timeout=http_timeout, max_bytes=max_bytes),
    ]
    return {tool.name: tool for tool in tools}
