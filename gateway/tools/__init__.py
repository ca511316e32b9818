"""tools: what skills and the model may do to the outside world.

Rule of this folder: every tool validates before it acts; refusals raise ToolRefused with
what to change in config.yaml (the `tools:` keys: allowed_commands, command_timeout,
allowed_hosts, http_timeout, max_bytes). Allowlists are closed by default: an empty list
refuses everything and "*" (hosts only) must be written out. A program the model runs is
started only inside the OS sandbox (`sandbox.py`), never without it.
"""

from __future__ import annotations

from gateway.tools.base import Tool, ToolError, ToolRefused
from gateway.tools.command import CommandResult, CommandTool
from gateway.tools.files import FilesTool
from gateway.tools.http import HttpResult, HttpTool
from gateway.tools.registry import build_tools

__all__ = [
    "CommandResult",
    "CommandTool",
    "FilesTool",
    "HttpResult",
    "HttpTool",
    "Tool",
    "ToolError",
    "ToolRefused",
    "build_tools",
]
