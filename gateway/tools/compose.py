"""The `compose` tool: heavy tools (OCR, a document converter, speech to text) run as Compose
stacks that a skill starts when it needs them, calls over HTTP, and that stop when idle.

What the caller can rely on:
- Only stacks declared in config.yaml (`tools.compose: {name: path}`, a compose file inside
  the workspace) are ever run: a skill names a stack, never a file, so nothing the model or a
  page wrote can become a container.
- The engine is whichever the machine has, found once (`find_engine`): `docker compose`,
  `podman compose`, `docker-compose` or `podman-compose`; `moltbot doctor` names it. Each
  stack runs as project `moltbot-<name>` from its file's folder.
- Actions: `up` (detached; waits at most `tools.compose_timeout`), `down`, `ps`, `logs` (the
  last `tail` lines, at most `tools.max_bytes`), and `call`: an HTTP request to a port the
  stack publishes on this machine (`ports: ["127.0.0.1:8089:8080"]` in its file), made by the
  http tool with that one address allowed, so its redirects, size cap and time limit apply.
  A call starts nothing: `up` first.
- A stack nobody used for `tools.compose_idle` is taken down, and so is every stack the
  gateway started when it stops.
- Engine commands run with an argument list (no shell) in the gateway's environment less its
  secrets (`PATH`, `HOME`, locale, `XDG_RUNTIME_DIR`, `DOCKER_HOST`, `CONTAINERS_CONF`).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.common import process
from gateway.tools.base import Tool, ToolError, ToolRefused, check_arguments, get_str
from gateway.tools.http import HttpTool

log = logging.getLogger(__name__)

ACTIONS = ("up", "down", "ps", "logs", "call")
ENGINES = (["docker", "compose"], ["podman", "compose"], ["docker-compose"], ["podman-compose"])
PROBE_TIMEOUT = 20.0
QUICK_TIMEOUT = 60.0  # ps and logs
LOG_LINES = 200
_PASSED_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "XDG_RUNTIME_DIR",
               "DOCKER_HOST", "DOCKER_CONFIG", "CONTAINERS_CONF", "CONTAINER_HOST")
_PORT = re.compile(r"^(?:(?P<ip>\[?[0-9A-Fa-f.:]+\]?):)?(?P<host>\d+):(?P<container>\d+)"
                   r"(?:/tcp)?$")

_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "stack": {"type": "string", "description": "A stack named in tools.compose."},
        "action": {"type": "string", "enum": list(ACTIONS)},
        "service": {"type": "string", "description": "call: the service to reach"},
        "port": {"type": "integer", "description": "call: its container port"},
        "path": {"type": "string", "description": "call: the URL path, e.g. /convert"},
        "method": {"type": "string", "enum": ["GET", "POST"]},
        "json": {"type": "object"},
        "data": {"type": "string"},
        "tail": {"type": "integer", "description": "logs: lines per service (default 200)"},
    },
    "required": ["stack", "action"],
}


@dataclass(frozen=True)
class Engine:
    """The compose command this machine has, e.g. ["podman-compose"]."""

    argv: tuple[str, ...]
    version: str

    @property
    def name(self) -> str:
        return " ".join(self.argv)


@functools.cache
def find_engine() -> Engine | str:
    """The first compose engine that answers `version` here, or why there is none."""
    tried = []
    for argv in ENGINES:
        program = shutil.which(argv[0])
        if program is None:
            tried.append(f"{' '.join(argv)}: not installed")
            continue
        try:
            done = subprocess.run([program, *argv[1:], "version"], capture_output=True,
                                  text=True, timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL,
                                  env=engine_env())
        except (OSError, subprocess.TimeoutExpired) as e:
            tried.append(f"{' '.join(argv)}: {e}")
            continue
        if done.returncode == 0:
            said = (done.stdout.strip().splitlines() or [""])[-1]
            return Engine((program, *argv[1:]), said[:100])
        tried.append(f"{' '.join(argv)}: exit code {done.returncode}")
    return "no compose engine found (" + "; ".join(tried) + ")"


def doctor_check(stacks: dict[str, str]) -> tuple[bool, str, str]:
    """`moltbot doctor`'s line: fails only when tools.compose declares stacks and no engine
    can run them."""
    engine = find_engine()
    if isinstance(engine, Engine):
        return (True, f"compose: {engine.name} ({engine.version}) runs tools.compose stacks",
                "")
    if not stacks:
        return (True, f"compose: {engine} (no stack in tools.compose)", "")
    return (False, f"compose: {engine}, but tools.compose declares {', '.join(stacks)}",
            "install Docker with its compose plugin, or podman with podman-compose")


def engine_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in _PASSED_ENV}


class Stacks:
    """The declared stacks: runs the engine, remembers use, takes idle stacks down."""

    def __init__(self, workspace: Path, stacks: dict[str, str], *, idle: float, timeout: float,
                 max_bytes: int, http_timeout: float, engine: Engine | str | None = None
                 ) -> None:
        self.workspace = workspace
        self.stacks = dict(stacks)
        self.idle = idle
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.http_timeout = http_timeout
        self._engine = engine
        self.used: dict[str, float] = {}  # stacks this gateway brought up -> last use
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def engine(self) -> Engine:
        engine = self._engine if self._engine is not None else find_engine()
        if isinstance(engine, str):
            raise ToolError(f"compose: {engine}; install Docker with its compose plugin, or "
                            "podman with podman-compose (`moltbot doctor` says which it finds)")
        return engine

    def file(self, stack: str) -> Path:
        if stack not in self.stacks:
            declared = ", ".join(sorted(self.stacks)) or "none"
            raise ToolRefused(f"compose: refused stack {stack!r}: it is not declared in "
                              f"tools.compose in config.yaml (declared: {declared}); add "
                              f"`{stack}: path/to/compose.yaml` there to allow it")
        path = (self.workspace / self.stacks[stack]).resolve()
        if not path.is_relative_to(self.workspace.resolve()):
            raise ToolRefused(f"compose: refused stack {stack!r}: {self.stacks[stack]} leads "
                              "outside the workspace")
        if not path.is_file():
            raise ToolError(f"compose: stack {stack!r}: {self.stacks[stack]} does not exist in "
                            "the workspace")
        return path

    def argv(self, stack: str, *args: str) -> list[str]:
        """The engine's command line for `args` on `stack`."""
        path = self.file(stack)
        return [*self.engine().argv, "-p", f"moltbot-{stack}", "-f", str(path), *args]

    def run(self, stack: str, args: list[str], timeout: float) -> str:
        argv = self.argv(stack, *args)
        try:
            proc = process.start(argv, cwd=self.file(stack).parent, env=engine_env(),
                                 with_stdin=False)
        except OSError as e:
            raise ToolError(f"compose: could not start {argv[0]}: {e.strerror or e}") from e
        result = process.collect(proc, None, timeout=timeout, max_stdout=self.max_bytes,
                                 max_stderr=self.max_bytes)
        out = result.stdout.decode("utf-8", "replace")
        err = result.stderr.decode("utf-8", "replace")
        log.info("compose: %s %s -> %s", stack, args[0], result.exit_code)
        if result.timed_out:
            raise ToolError(f"compose: {stack} {args[0]} took over {timeout:.0f}s and was "
                            "stopped; raise tools.compose_timeout in config.yaml if the "
                            f"stack is just slow\n{err[-2000:]}")
        if result.exit_code != 0:
            raise ToolError(f"compose: {stack} {args[0]} failed (exit code "
                            f"{result.exit_code}): {(err or out)[-2000:].strip()}")
        return (out + ("\n" + err if err.strip() else "")).strip()

    def act(self, arguments: dict[str, Any]) -> str:
        args = check_arguments("compose", arguments)
        stack = get_str("compose", args, "stack")
        action = get_str("compose", args, "action")
        if action not in ACTIONS:
            raise ToolError(f"compose: action must be one of {', '.join(ACTIONS)}")
        self.file(stack)  # refused before anything runs
        if action == "up":
            said = self.run(stack, ["up", "-d"], self.timeout)
            self.used[stack] = time.monotonic()
            self._start_reaper()
            return f"{stack} is up\n{said}"
        if action == "down":
            self.used.pop(stack, None)
            return f"{stack} is down\n{self.run(stack, ['down'], self.timeout)}"
        if stack in self.used:
            self.used[stack] = time.monotonic()
        if action == "ps":
            return self.run(stack, ["ps"], QUICK_TIMEOUT)
        if action == "logs":
            tail = args.get("tail", LOG_LINES)
            if not isinstance(tail, int) or not 1 <= tail <= 10_000:
                raise ToolError("compose: tail must be a number of lines from 1 to 10000")
            return self.run(stack, ["logs", "--tail", str(tail)], QUICK_TIMEOUT)
        return self.call(stack, args)

    def call(self, stack: str, args: dict[str, Any]) -> str:
        """An HTTP request to a port the stack publishes, through the http tool."""
        service = get_str("compose", args, "service")
        port = args.get("port")
        if not isinstance(port, int):
            raise ToolError("compose: call needs port, the service's container port (a number)")
        path = get_str("compose", args, "path", "/")
        if not path.startswith("/"):
            raise ToolError(f"compose: path must start with '/', got {path[:100]!r}")
        host, host_port = published(self.file(stack), service, port)
        http = HttpTool([host], timeout=self.http_timeout, max_bytes=self.max_bytes)
        url = f"http://{host if ':' not in host else f'[{host}]'}:{host_port}{path}"
        return http.call({"url": url, "method": args.get("method", "GET"),
                          **{k: args[k] for k in ("json", "data", "headers") if k in args}})

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap, daemon=True,
                                            name="compose idle")
            self._reaper.start()

    def _reap(self) -> None:
        while not self._stop.wait(min(30.0, max(1.0, self.idle / 4))):
            self.take_down_idle()

    def take_down_idle(self) -> list[str]:
        """Take down the stacks unused for `idle` seconds; their names."""
        now = time.monotonic()
        idle = [s for s, at in list(self.used.items()) if now - at >= self.idle]
        for stack in idle:
            if self._down_quietly(stack):
                log.info("compose: %s was idle for %.0fs: taken down", stack, self.idle)
        return idle

    def reconfigure(self, stacks: dict[str, str], *, idle: float, timeout: float,
                    max_bytes: int, http_timeout: float) -> None:
        """A new `tools:` section: a running stack no longer declared, or now declared with
        another file, is taken down (with the file it was started from) first."""
        for stack in [s for s in self.used if stacks.get(s) != self.stacks.get(s)]:
            log.info("compose: %s changed in tools.compose: taking it down", stack)
            self._down_quietly(stack)
        self.stacks = dict(stacks)
        self.idle, self.timeout = idle, timeout
        self.max_bytes, self.http_timeout = max_bytes, http_timeout

    def stop(self) -> None:
        """Take down every stack this gateway brought up."""
        self._stop.set()
        for stack in list(self.used):
            self._down_quietly(stack)

    def _down_quietly(self, stack: str) -> bool:
        """`down` for the gateway's own reasons (idle, reload, stop): a failure is logged."""
        self.used.pop(stack, None)
        try:
            self.run(stack, ["down"], self.timeout)
        except ToolError as e:
            log.warning("compose: taking %s down failed: %s", stack, e)
            return False
        return True


def published(file: Path, service: str, port: int) -> tuple[str, int]:
    """Where `service`'s container `port` is published on this machine, read from the
    compose file: (address, port). Only a port bound to this machine (loopback, or no
    address, which compose binds everywhere) can be called."""
    try:
        spec = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ToolError(f"compose: cannot read {file.name}: {e}") from e
    services = spec.get("services") if isinstance(spec, dict) else None
    if not isinstance(services, dict) or service not in services:
        names = ", ".join(services) if isinstance(services, dict) else "none"
        raise ToolError(f"compose: {file.name} has no service {service!r} (services: {names})")
    for entry in (services[service] or {}).get("ports") or []:
        found = _PORT.match(str(entry))
        if found and int(found["container"]) == port:
            ip = (found["ip"] or "127.0.0.1").strip("[]")
            if ip in ("0.0.0.0", "::"):
                ip = "127.0.0.1"
            return ip, int(found["host"])
    raise ToolError(f"compose: {service} does not publish port {port} in {file.name}; add "
                    f"ports: [\"127.0.0.1:<host port>:{port}\"] to the service")


class ComposeTool(Tool):
    """`Stacks.act` as a tool (skills only: the model is never offered it)."""

    name = "compose"
    description = "Start, stop, inspect and call the Compose stacks declared in tools.compose."
    parameters = _PARAMETERS

    def __init__(self, stacks: Stacks) -> None:
        self.stacks = stacks

    def call(self, arguments: dict[str, Any]) -> str:
        return self.stacks.act(arguments)
