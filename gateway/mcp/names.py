"""How an MCP tool is named: `clock.now` for skills, `clock__now` for the model.

Function-calling APIs accept only `^[A-Za-z0-9_-]{1,64}$` as a function's name, so the model
sees `<server>__<tool>`, with any other character of the tool's name made `_` and a name past
64 characters cut and given a short hash (still unique, still stable). Server names never
hold `__` or `.` (`options.SERVER_NAME`), so both forms split back without doubt.
"""

from __future__ import annotations

import hashlib
import re

MAX_FUNCTION = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def function_name(server: str, tool: str) -> str:
    """The name the model calls: `clock__now`."""
    name = f"{server}__{_UNSAFE.sub('_', tool)}"
    if len(name) <= MAX_FUNCTION and _UNSAFE.sub("_", tool) == tool:
        return name
    digest = hashlib.sha256(tool.encode()).hexdigest()[:8]  # `a.b` and `a_b` stay apart
    return f"{name[:MAX_FUNCTION - 9]}_{digest}"


def split_skill_name(name: str) -> tuple[str, str] | None:
    """`"clock.now"` -> `("clock", "now")`; None for a name that is not `<server>.<tool>`."""
    server, dot, tool = name.partition(".")
    return (server, tool) if dot and server and tool else None
