"""`mcp_servers:` in config.yaml: the MCP tool servers the gateway starts and keeps running.

Each entry is one server, reached either by starting `command` (stdio, run in the workspace)
or at `url` (streamable HTTP). `offer_to_model` names the tools the model may call; skills may
call any tool of any server (`context.tool("clock.now")`). Reading this section imports no
MCP library: the CLI reads config.yaml often.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from gateway.common.options import Duration, Section

SERVER_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]|_(?!_))*$")
MAX_NAME = 30  # leaves room for the tool's name in a 64-character function name


class McpServerConfig(Section):
    """One server: `command` or `url`, never both."""

    command: list[str] | None = Field(None, description="the program and its arguments, run "
                                      "in the workspace, speaking MCP on stdin/stdout")
    url: str | None = Field(None, description="a streamable HTTP endpoint, e.g. "
                            "http://127.0.0.1:8931/mcp")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP headers sent to "
                                    "`url`, e.g. Authorization: \"Bearer ${keyring:mcp_x}\"")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables the "
                                "`command` gets besides PATH, HOME, USER, SHELL, TERM")
    offer_to_model: list[str] = Field(default_factory=list, description="tools the model may "
                                      "call (skills may call every tool)")
    timeout: Duration = Field(30.0, gt=0, le=3600, description="seconds a tool call may take")

    @model_validator(mode="after")
    def _one_way_in(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (a program speaking MCP on stdio) or url "
                             "(a streamable HTTP endpoint), not both and not neither")
        if self.command is not None:
            if not self.command or not all(isinstance(a, str) and a for a in self.command):
                raise ValueError("command must be a list such as [\"python3\", "
                                 "\"tools/clock_server.py\"] (the program first)")
            if self.headers:
                raise ValueError("headers go to a url; a command gets env instead")
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"url must be http:// or https:// with a host, got "
                                 f"{self.url!r}")
            if self.env:
                raise ValueError("env goes to a command; a url gets headers instead")
        return self


def _names(servers: dict[str, McpServerConfig]) -> dict[str, McpServerConfig]:
    for name in servers:
        if not SERVER_NAME.match(name) or len(name) > MAX_NAME:
            raise ValueError(
                f"{name!r} cannot name a server: up to {MAX_NAME} letters, digits, '-' and "
                f"single '_' (the model sees its tools as <server>__<tool>, e.g. clock__now)")
    return servers


McpServers = Annotated[dict[str, McpServerConfig], AfterValidator(_names)]
