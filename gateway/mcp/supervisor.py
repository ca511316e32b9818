"""The gateway's side of the MCP tool servers: one child process per server, supervised.

Each server in `mcp_servers:` gets its own `python -m gateway.mcp.host` (the SDK is asyncio and
may not run on the gevent loop: see `gateway.mcp.host`). A greenlet per server starts it,
reads its JSON lines cooperatively (gevent's patched pipes), hands each call's answer to the
greenlet waiting for it, and when the child ends (the server exited, never initialised, or
stopped answering) keeps the reason and starts it again after 1 s, doubling up to 30 s; a
server that ran a minute starts its backoff afresh. The child ends when its stdin closes, so a
gateway killed with SIGKILL leaves no server behind.

`McpServers.apply` takes a new `mcp_servers:` section: servers whose connection changed
(command, url, headers, env) are restarted, new ones started, removed ones stopped; a change of
`offer_to_model` or `timeout` alone applies without a restart.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.mcp.names import function_name, split_skill_name
from gateway.mcp.options import McpServerConfig
from gateway.observe.redact import mask_urls
from gateway.skills.hostpool import host_environment
from gateway.tools.base import ToolError

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
STEADY = 60.0  # seconds of running after which a failure starts the backoff at 1 s again
STOP_WAIT = 3.0
REPLY_MARGIN = 5.0  # the child times a call out itself; the gateway waits this much longer
CONNECTION = ("command", "url", "headers", "env")  # what a restart is needed for


def host_argv() -> list[str]:
    """`-m gateway.mcp.host`: the bundled app's binary understands it too."""
    return [sys.executable, "-m", "gateway.mcp.host"]


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] = field(default_factory=dict)


class ServerProcess:
    """One configured server and the child that hosts its client."""

    def __init__(self, name: str, config: McpServerConfig, workspace: Path) -> None:
        self.name = name
        self.config = config
        self.workspace = workspace
        self.state = "starting"
        self.reason = ""
        self.tools: list[dict[str, Any]] = []
        self.server = ""  # the name and version the server gave
        self.restarts = 0
        self.since = time.time()
        self.retry_at: float | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._write = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"mcp-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the child's stdin (it closes its server and exits); kill it if it lingers."""
        self._stopped.set()
        proc = self._proc
        if proc is not None:
            _close(proc.stdin)
            try:
                proc.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._fail_pending("the server was stopped")
        self.state, self.reason, self.since = "stopped", "", time.time()

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            started = time.monotonic()
            why = self._run_once()
            if self._stopped.is_set():
                return
            failures = 1 if time.monotonic() - started > STEADY else failures + 1
            delay = min(MAX_BACKOFF, 2.0 ** (failures - 1))
            self.state, self.reason, self.since = "failed", why, time.time()
            self.retry_at = time.time() + delay
            log.warning("MCP server %s failed (%s); starting it again in %.0fs", self.name,
                        why, delay)
            if self._stopped.wait(delay):
                return
            self.restarts += 1

    def _run_once(self) -> str:
        """Run one child until it ends; returns why it ended."""
        self.state, self.since, self.retry_at = "starting", time.time(), None
        try:
            proc = subprocess.Popen(host_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True, encoding="utf-8", errors="replace",
                                    cwd=self.workspace, env=host_environment(self.workspace, {}),
                                    start_new_session=True)
        except OSError as e:
            return f"cannot start its host process: {e}"
        self._proc = proc
        why = ""
        try:
            self._send(self._spec())
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    item: dict[str, Any] = json.loads(line)
                except ValueError:
                    continue
                why = self._take(item) or why
        except OSError as e:  # the child died while we wrote to it
            why = why or f"its host process went away ({e})"
        _close(proc.stdin)
        code = proc.wait()
        self._fail_pending(f"the server went away: {why}" if why else "the server went away")
        return why or f"its host process exited with code {code}"

    def _spec(self) -> dict[str, Any]:
        config = self.config
        return {"name": self.name, "command": config.command, "url": config.url,
                "headers": config.headers, "env": config.env, "cwd": str(self.workspace),
                "version": __version__}

    def _take(self, item: dict[str, Any]) -> str:
        """One line from the child; returns a failure reason when it says it failed."""
        if "id" in item:
            pending = self._pending.get(int(item["id"]))
            if pending is not None:
                pending.answer = item
                pending.done.set()
        elif item.get("ready"):
            self.tools, self.server = list(item.get("tools") or []), str(item.get("server", ""))
            self.state, self.reason, self.since = "running", "", time.time()
            log.info("MCP server %s is running (%d tools)", self.name, len(self.tools))
            missing = self.missing_offered()
            if missing:
                log.warning("mcp_servers.%s.offer_to_model names tools the server does not "
                            "have: %s", self.name, ", ".join(missing))
        elif "tools" in item:
            self.tools = list(item["tools"])
        elif "failed" in item:
            return str(item["failed"])
        return ""

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
            self._send({"id": call_id, "tool": tool, "arguments": arguments,
                        "timeout": self.config.timeout})
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

    def _send(self, line: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise OSError("no host process")
        with self._write:
            proc.stdin.write(json.dumps(line, ensure_ascii=False) + "\n")
            proc.stdin.flush()

    def _fail_pending(self, why: str) -> None:
        for pending in list(self._pending.values()):
            pending.answer = {"error": why}
            pending.done.set()

    # -- what it shows -----------------------------------------------------------------------
    def tool_names(self) -> list[str]:
        return [str(t["name"]) for t in self.tools]

    def missing_offered(self) -> list[str]:
        names = set(self.tool_names())
        return [n for n in self.config.offer_to_model if n not in names]

    def describe_state(self) -> str:
        if self.state == "failed":
            wait = max(0.0, (self.retry_at or 0) - time.time())
            return f"failed ({self.reason}); it is started again in {wait:.0f}s"
        return self.state

    def status(self) -> dict[str, Any]:
        config = self.config
        offered = [n for n in config.offer_to_model if n in set(self.tool_names())]
        return {"name": self.name, "state": self.state, "reason": self.reason,
                "transport": "stdio" if config.command else "http",
                "target": " ".join(config.command) if config.command else
                mask_urls(config.url or ""),
                "server": self.server, "since": self.since, "retry_at": self.retry_at,
                "restarts": self.restarts, "tools": self.tool_names(),
                "offered": [function_name(self.name, n) for n in offered],
                "missing": self.missing_offered(), "timeout": config.timeout,
                "pid": self._proc.pid if self._proc and self.state != "stopped" else None}


class McpServers:
    """Every configured server; what the model, the skills and the console reach."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.servers: dict[str, ServerProcess] = {}

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

    def _start(self, name: str, config: McpServerConfig) -> None:
        self.servers[name] = ServerProcess(name, config, self.workspace)
        self.servers[name].start()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
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


def _close(stream: Any) -> None:
    with contextlib.suppress(OSError, ValueError):
        if stream is not None:
            stream.close()
