"""The tools the gateway process hosts for every caller: the browser (one Chromium child) and
the Compose stacks (whose idle time only a long-lived owner can watch).

A skill host is a child that may be recycled at any time, so a skill's `context.tool("browser"
| "compose", ...)` travels over its pipe (`{"op": "tool", "tool", "arguments"}`) and is
answered here; the model's browser tool calls the same host directly. `apply` takes a new
`tools:` section on every reload.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gateway.tools.base import Tool, ToolError, ToolRefused
from gateway.tools.browser import BrowserHost, BrowserTool
from gateway.tools.compose import ComposeTool, Stacks
from gateway.tools.options import ToolsConfig
from gateway.tools.sandbox import find_sandbox

log = logging.getLogger(__name__)

HOSTED = ("browser", "compose")


class HostedTools:
    """The browser host and the stacks, and the tools built on them for this config."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.browser: BrowserHost | None = None
        self.stacks: Stacks | None = None
        self.tools: dict[str, Tool] = {}

    def apply(self, config: ToolsConfig) -> None:
        """Build the tools for `config`; the browser process is started at its first call."""
        if self.browser is None:
            sandbox = find_sandbox().sandbox
            if sandbox is None:
                log.info("the browser runs without a sandbox (%s): skills may use it, the "
                         "model is not offered it", find_sandbox().describe())
            self.browser = BrowserHost(self.workspace, sandbox=sandbox,
                                       pages=config.browser_pages)
        else:
            self.browser.configure(config.browser_pages)
        if self.stacks is None:
            self.stacks = Stacks(self.workspace, config.compose, idle=config.compose_idle,
                                 timeout=config.compose_timeout, max_bytes=config.max_bytes,
                                 http_timeout=config.http_timeout)
        else:  # what is up stays up, unless its declaration changed
            self.stacks.reconfigure(config.compose, idle=config.compose_idle,
                                    timeout=config.compose_timeout,
                                    max_bytes=config.max_bytes,
                                    http_timeout=config.http_timeout)
        self.tools = {"browser": self.browser_tool(config), "compose": ComposeTool(self.stacks)}

    def browser_tool(self, config: ToolsConfig) -> BrowserTool:
        browser = self.browser
        assert browser is not None
        tool = BrowserTool(lambda request: browser.call(request, tool.wait(request)),
                           workspace=self.workspace, allowed_hosts=config.allowed_hosts,
                           timeout=config.browser_timeout, max_bytes=config.max_bytes)
        return tool

    def for_model(self, config: ToolsConfig) -> dict[str, Tool]:
        """The model's: the browser when `offer_to_model` lists it and it runs confined."""
        if "browser" not in config.offer_to_model or self.browser is None:
            return {}
        if not self.browser.confined:
            log.warning("%s; the model is not offered the browser tool",
                        find_sandbox().describe())
            return {}
        return {"browser": self.browser_tool(config)}

    def for_skill(self, question: dict[str, Any], msg: dict[str, Any]) -> dict[str, Any]:
        """A skill host's `{"op": "tool", "tool": "browser", "arguments": {...}}`."""
        tool = self.tools.get(str(question.get("tool")))
        arguments = question.get("arguments")
        if tool is None or not isinstance(arguments, dict):
            return {"error": f"no hosted tool {question.get('tool')!r}", "code": "bad_request"}
        try:
            text, spans = tool.traced(arguments)
        except ToolRefused as e:
            log.info("msg_id=%s a skill's %s call was refused: %s", msg.get("id"), tool.name,
                     e)
            return {"error": str(e), "code": "refused", "spans": e.spans}
        except ToolError as e:
            return {"error": str(e), "code": "tool_error", "spans": e.spans}
        return {"text": text, "spans": spans}

    def stop(self) -> None:
        if self.stacks is not None:
            self.stacks.stop()
        if self.browser is not None:
            self.browser.stop()
