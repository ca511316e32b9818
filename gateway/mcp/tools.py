"""MCP tools as the model sees them: `Tool`s beside its own, offered only while they can run.

The settings snapshot keeps one `ModelTools` mapping: the model's own tools (`tools.
offer_to_model`) plus, read afresh each time a message asks, the tools `offer_to_model` names
on every MCP server that is running now. A server that is down is not offered (the model is
never handed a function that can only fail); one that dies between the offer and the call
answers the model with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from gateway.mcp.supervisor import McpServers, ServerProcess
from gateway.tools.base import Tool, check_arguments


class McpTool(Tool):
    """One tool of one server, under its function-calling name (`clock__now`)."""

    def __init__(self, name: str, server: ServerProcess, listed: dict[str, Any]) -> None:
        self.name = name
        self.server = server
        self.tool = str(listed["name"])
        self.description = str(listed.get("description") or "") or \
            f"the {self.tool} tool of the {server.name} tool server"
        schema = listed.get("input_schema")
        self.parameters = schema if isinstance(schema, dict) and schema.get(
            "type") == "object" else {"type": "object", "properties": {}}

    def call(self, arguments: dict[str, Any]) -> str:
        return self.server.call(self.tool, check_arguments(self.name, arguments))


class ModelTools(Mapping[str, Tool]):
    """The model's own tools and the MCP tools offered right now, as one mapping."""

    def __init__(self, own: Mapping[str, Tool], servers: McpServers) -> None:
        self.own = own
        self.servers = servers

    def _now(self) -> dict[str, Tool]:
        found: dict[str, Tool] = dict(self.own)
        for name, (server, listed) in self.servers.offered().items():
            found.setdefault(name, McpTool(name, server, listed))
        return found

    def __getitem__(self, name: str) -> Tool:
        return self._now()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())
