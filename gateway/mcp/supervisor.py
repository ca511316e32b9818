"""The gateway's side of the MCP tool servers: one child process hosting every server's
client, and each server supervised on its own.

The SDK is asyncio and may not run on the gevent loop (see `gateway.mcp.host`), so one
`python -m gateway.mcp.host` holds a session per server. A greenlet starts it, reads its JSON
lines cooperatively (gevent's patched pipes) and hands each line to its server: a call's
answer to the greenlet waiting for it, `ready` and `failed` to the server's state. A server
that fails (exits, never initialises, stops answering) keeps the reason and is started again
after 1 s, doubling up to 30 s; one that ran a minute starts its backoff afresh. If the child
itself dies, every server fails with that reason and the child is started again on the same
backoff. The child ends when its stdin closes, so a gateway killed with SIGKILL leaves no
server behind.

`McpServers.apply` takes a new `mcp_servers:` section: servers whose connection changed
(command, url, headers, env) are restarted, new ones started, removed ones stopped; a change of
`offer_to_model` or `timeout` alone applies without a restart.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.common.backoff import Backoff
from gateway.common.child_link import ChildLink
from gateway.mcp.names import function_name, split_skill_name
from gateway.mcp.options import McpServerConfig
from gateway.observe.redact import mask_urls
from gateway.skills.hostpool import host_environment
from gateway.tools.base import ToolError

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
REPLY_MARGIN = 5.0  # the child times a call out itself; the gateway waits this much longer
CONNECTION = ("command", "url", "headers", "env")  # what a restart is needed for


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] = field(default_factory=dict)


class HostProcess:
    """The one child (`common.child_link`); restarted with backoff while any server is
    configured."""

    def __init__(self, workspace: Path, servers: dict[str, ServerProcess]) -> None:
        self.workspace = workspace
        self.servers = servers
        self.state = "stopped"
        self.reason = ""
        self.link = ChildLink("gateway.mcp.host", cwd=workspace,
                              env=host_environment(workspace, {}), on_start=self._up,
                              on_line=self._take, on_ended=self._ended, cap=MAX_BACKOFF)
        self.send = self.link.send
        self.start = self.link.start
        self.stop = self.link.stop

    @property
    def pid(self) -> int | None:
        return self.link.pid

    def _up(self) -> None:
        self.state, self.reason = "running", ""
        for server in list(self.servers.values()):
            server.begin()

    def _take(self, item: dict[str, Any]) -> None:
        named = self.servers.get(str(item.get("server")))
        if named is not None:
            named.take(item)

    def _ended(self, why: str, delay: float) -> None:
        self.state, self.reason = "failed", why
        log.warning("the MCP host process ended (%s); starting it again in %.0fs", why, delay)
        for server in list(self.servers.values()):
            server.failed(f"the MCP host process ended ({why})", delay)


class ServerProcess:
    """One configured server: its state, its tools, its calls in flight, its backoff."""

    def __init__(self, name: str, config: McpServerConfig, host: HostProcess) -> None:
        self.name = name
        self.config = config
        self.host = host
        self.state = "starting"
        self.reason = ""
        self.tools: list[dict[str, Any]] = []
        self.info = ""  # the name and version the server gave
        self.restarts = 0
        self.since = time.time()
        self.started: float | None = None  # when it last became ready
        self.retry_at: float | None = None
        self._backoff = Backoff(MAX_BACKOFF)
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._stopped = threading.Event()
        self._attempt = 0  # a retry scheduled for an older attempt does nothing

    # -- life ------------------------------------------------------------------------------
    def begin(self) -> None:
        """Ask the host to start the server (at first, after a failure, after a host restart)."""
        if self._stopped.is_set():
            return
        if self.state == "failed":  # again, after its backoff or with a restarted host
            self.restarts += 1
        self._attempt += 1
        self.state, self.since, self.retry_at = "starting", time.time(), None
        # a host that is (re)starting starts every server itself once it is up
        with contextlib.suppress(OSError):
            self.host.send({"op": "start", "server": self.name, "spec": self._spec()})

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self.host.send({"op": "stop", "server": self.name})
        self._fail_pending("the server was stopped")
        self.state, self.reason, self.since = "stopped", "", time.time()

    def failed(self, why: str, delay: float | None = None) -> None:
        """The server ended; start it again after the backoff (or when the host returns)."""
        if self._stopped.is_set():
            return
        ran = time.time() - self.started if self.state == "running" and self.started else 0
        wait = delay if delay is not None else self._backoff.after(ran)
        self.state, self.reason, self.since = "failed", why, time.time()
        self.retry_at = time.time() + wait
        self._fail_pending(f"the server went away: {why}")
        log.warning("MCP server %s failed (%s); starting it again in %.0fs", self.name, why,
                    wait)
        if delay is None:  # a host restart starts every server itself
            attempt = self._attempt
            threading.Thread(target=self._retry, args=(attempt, wait), daemon=True).start()

    def _retry(self, attempt: int, wait: float) -> None:
        if not self._stopped.wait(wait) and attempt == self._attempt:
            self.begin()

    def _spec(self) -> dict[str, Any]:
        config = self.config
        return {"command": config.command, "url": config.url, "headers": config.headers,
                "env": config.env, "cwd": str(self.host.workspace), "version": __version__}

    def take(self, item: dict[str, Any]) -> None:
        """One line from the host about this server."""
        if "id" in item:
            pending = self._pending.get(int(item["id"]))
            if pending is not None:
                pending.answer = item
                pending.done.set()
        elif item.get("ready"):
            self.tools, self.info = list(item.get("tools") or []), str(item.get("info", ""))
            self.state, self.reason = "running", ""
            self.since = self.started = time.time()
            log.info("MCP server %s is running (%d tools)", self.name, len(self.tools))
            missing = self.missing_offered()
            if missing:
                log.warning("mcp_servers.%s.offer_to_model names tools the server does not "
                            "have: %s", self.name, ", ".join(missing))
        elif "tools" in item:
            self.tools = list(item["tools"])
        elif "failed" in item:
            self.failed(str(item["failed"]))

    # -- calls -----------------------------------------------------------------------------
    def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """The tool's text answer; ToolError saying why when it failed or cannot run."""
        where = f"{self.name}.{tool}"
        if self.state != "running":
            raise ToolError(f"{where}: the MCP server {self.name} is {self.describe_state()}")
        if not any(t["name"] == tool for t in self.tools):
            raise ToolError(f"{where}: the MCP server {self.name} has no tool {tool!r}; its "
                            f"tools: {', '.join(self.tool_names()) or 'none'}")
        call_id = next(self._ids)
        pending = self._pending[call_id] = _Pending()
        try:
            self.host.send({"op": "call", "server": self.name, "id": call_id, "tool": tool,
                            "arguments": arguments, "timeout": self.config.timeout})
            if not pending.done.wait(self.config.timeout + REPLY_MARGIN):
                raise ToolError(f"{where}: no answer within {self.config.timeout:g}s")
        except OSError as e:
            raise ToolError(f"{where}: the MCP server {self.name} went away") from e
        finally:
            self._pending.pop(call_id, None)
        answer = pending.answer
        if "error" in answer:
            raise ToolError(f"{where}: {answer['error']}")
        text = str(answer.get("text", ""))
        if answer.get("is_error"):
            raise ToolError(f"{where} failed: {text}")
        return text

    def _fail_pending(self, why: str) -> None:
        for pending in list(self._pending.values()):
            pending.answer = {"error": why}
            pending.done.set()

    # -- what it shows -----------------------------------------------------------------------
    def tool_names(self) -> list[str]:
        return [str(t["name"]) for t in self.tools]

    def missing_offered(self) -> list[str]:
        """`offer_to_model` names the server did not list (once it has listed its tools)."""
        if self.started is None:
            return []
        names = set(self.tool_names())
        return [n for n in self.config.offer_to_model if n not in names]

    def describe_state(self) -> str:
        if self.state == "failed":
            wait = max(0.0, (self.retry_at or 0) - time.time())
            return f"failed ({self.reason}); it is started again in {wait:.0f}s"
        if self.state == "starting" and self.reason:
            return f"starting again (it failed: {self.reason})"
        return self.state

    def status(self) -> dict[str, Any]:
        config = self.config
        offered = [n for n in config.offer_to_model if n in set(self.tool_names())]
        return {"name": self.name, "state": self.state, "reason": self.reason,
                "transport": "stdio" if config.command else "http",
                "target": " ".join(config.command) if config.command else
                mask_urls(config.url or ""),
                "server": self.info, "since": self.since, "started": self.started,
                "retry_at": self.retry_at, "restarts": self.restarts,
                "tools": self.tool_names(),
                "offered": [function_name(self.name, n) for n in offered],
                "missing": self.missing_offered(), "timeout": config.timeout,
                "host_pid": self.host.pid}


class McpServers:
    """Every configured server; what the model, the skills and the console reach."""

    def __init__(self, workspace: Path) -> None:
        self.servers: dict[str, ServerProcess] = {}
        self.host = HostProcess(workspace, self.servers)

    def apply(self, configs: Mapping[str, McpServerConfig]) -> None:
        """Start, stop and restart exactly the servers whose entry changed."""
        for name, server in list(self.servers.items()):
            config = configs.get(name)
            if config is None:
                log.info("MCP server %s removed from mcp_servers: stopping it", name)
                server.stop()
                del self.servers[name]
            elif _connection(config) != _connection(server.config):
                log.info("MCP server %s changed: restarting it", name)
                server.stop()
                self._start(name, config)
            else:
                server.config = config  # offer_to_model, timeout: no restart needed
        for name, config in configs.items():
            if name not in self.servers:
                self._start(name, config)
        if self.servers:
            self.host.start()  # a no-op once it runs; it starts every server when it is up
        else:
            self.host.stop()  # no server: no process

    def _start(self, name: str, config: McpServerConfig) -> None:
        self.servers[name] = ServerProcess(name, config, self.host)
        self.servers[name].begin()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.host.stop()
        self.servers.clear()

    def call(self, name: str, arguments: dict[str, Any]) -> str:
        """`clock.now` with its arguments, as a skill names it; ToolError when it fails."""
        found = split_skill_name(name)
        server = self.servers.get(found[0]) if found else None
        if found is None or server is None:
            raise ToolError(f"no tool {name!r}: MCP tools are named <server>.<tool>; servers: "
                            f"{', '.join(sorted(self.servers)) or 'none in mcp_servers:'}")
        return server.call(found[1], arguments)

    def for_skill(self, question: dict[str, Any], msg: dict[str, Any]) -> dict[str, Any]:
        """A skill host's `{"op": "mcp", "tool": "clock.now", "arguments": {...}}`."""
        arguments = question.get("arguments")
        if not isinstance(arguments, dict):
            return {"error": "arguments must be a JSON object", "code": "bad_request"}
        try:
            return {"text": self.call(str(question.get("tool")), arguments)}
        except ToolError as e:
            log.info("msg_id=%s a skill's MCP call failed: %s", msg.get("id"), e)
            return {"error": str(e), "code": "tool_error"}

    def listing(self) -> list[dict[str, Any]]:
        return [self.servers[name].status() for name in sorted(self.servers)]

    def offered(self) -> dict[str, tuple[ServerProcess, dict[str, Any]]]:
        """The model's MCP tools now: `clock__now` -> (its server, the tool as listed), for
        every running server's listed tool that `offer_to_model` names."""
        found: dict[str, tuple[ServerProcess, dict[str, Any]]] = {}
        for name in sorted(self.servers):
            server = self.servers[name]
            if server.state != "running":
                continue
            wanted = set(server.config.offer_to_model)
            for tool in server.tools:
                if tool["name"] in wanted:
                    found[function_name(name, tool["name"])] = (server, tool)
        return found


def _connection(config: McpServerConfig) -> dict[str, Any]:
    return config.model_dump(include=set(CONNECTION))

