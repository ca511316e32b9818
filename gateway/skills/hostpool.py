"""The gateway's side of the skill hosts: a few child processes, each answering one call at a time.

A call waits for a free host, sends one line and reads one line back with the handler's time-out.
A host that runs past it (a loop, a hang) is killed and replaced by a fresh one loaded with the
same sources, so the sender gets an error and the next message a working skill. Reads use
`select` on the pipe, which gevent makes cooperative inside the gateway.

While a call runs, the host may ask the gateway a question (`context.send`: a line with
`"op"`); `serve` answers it on behalf of the message being handled, and the call goes on
waiting for its own answer within the same time-out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.skills.errors import SkillError

log = logging.getLogger(__name__)

LOAD_TIMEOUT = 60.0

# (the host's question, the message the call is handling) -> the answer line
Serve = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
Answer = Callable[[dict[str, Any]], dict[str, Any]]


# What a skill host inherits from the gateway's environment: what Python and the tools it
# starts need to run, and the locale. Never the rest: the gateway's environment holds every
# `${ENV}` secret of config.yaml (model keys, bot tokens, SMTP passwords). PYTHONPATH lets a
# gateway run from a checkout import itself in the host; _PYI_/_MEI are the desktop bundle's
# own start-up variables (paths).
PASSED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
              "PYTHONPATH")
PASSED_PREFIXES = ("LC_", "_PYI_", "_MEI")


def host_environment(workspace: Path, granted: dict[str, str]) -> dict[str, str]:
    """The environment of a skill host: the few variables above, what `skills.env` grants
    (its values already filled in from `${ENV}` or the keyring), and the workspace.

    The gateway's own interpreter folder comes first on PATH, so `python` in a skill (the
    guide's `subprocess.run(["python", "skills/doc_parser.py", ...])`) is the Python that has
    `moltbot_sdk`, not whichever the system has. A desktop bundle has no `python` to offer."""
    env = {k: v for k, v in os.environ.items()
           if k in PASSED_ENV or k.startswith(PASSED_PREFIXES)}
    if not getattr(sys, "frozen", False):
        ours = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([ours, *(p for p in env.get("PATH", "").split(os.pathsep)
                                                if p and p != ours)])
    env.update(granted)
    env.update({"MOLTBOT_HOME": str(workspace), "PYTHONUNBUFFERED": "1"})
    return env


class _Host:
    def __init__(self, workspace: Path, granted: dict[str, str]) -> None:
        self.granted = dict(granted)
        env = host_environment(workspace, granted)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.skills.host"], cwd=workspace, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, start_new_session=True)
        self._buffer = b""
        self.generation = -1  # which `SkillHostPool.load` this host has loaded
        self.last_answer: dict[str, Any] | None = None

    def ask(self, request: dict[str, Any], timeout: float,
            answer: Answer | None = None) -> dict[str, Any]:
        """Send `request`, answer the host's questions meanwhile, return its own answer."""
        deadline = time.monotonic() + timeout
        self._write(request)
        while True:
            found = json.loads(self._line(deadline))
            if "op" not in found:
                return found
            self._write(answer(found) if answer else {
                "error": "the gateway takes no questions here", "code": "bad_request"})

    def _write(self, line: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")
        self.proc.stdin.flush()

    def _line(self, deadline: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise EOFError("the skill host exited")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class _Waiter:
    """A call in line for a host: `_give_back` puts the host here and wakes it."""

    __slots__ = ("handed", "host")

    def __init__(self) -> None:
        self.handed = threading.Event()
        self.host: _Host | None = None


class SkillHostPool:
    def __init__(self, workspace: Path, size: int, config: dict[str, Any],
                 env: dict[str, str] | None = None) -> None:
        self.workspace = workspace
        self.size = size
        self.config = config
        self.env = dict(env or {})  # `skills.env`: a host started with other values is replaced
        self.sources: dict[str, str] = {}
        self.generation = 0
        self._idle: deque[_Host] = deque()
        self._all: list[_Host] = []
        self._free = threading.Lock()  # guards _idle and _waiting
        self._waiting: deque[_Waiter] = deque()  # calls waiting for a host, oldest first
        self.serve: Serve | None = None  # the gateway's answers to hosts' questions

    # -- loading -------------------------------------------------------------------------
    def load(self, sources: dict[str, str]) -> dict[str, Any]:
        """Make `sources` the current skills; returns one host's answer (what loaded, errors).

        Every free host loads now, side by side (each is a process: a skill that indexes a
        file at import costs the gateway's start that once, not once per host); a host busy
        with a call finishes it on the old code and loads the new sources before its next call.
        """
        self.sources = dict(sources)
        self.generation += 1
        while len(self._all) < self.size:
            self._add(_Host(self.workspace, self.env))
        with self._free:
            free = sum(1 for h in self._idle if h.generation != self.generation)
        answers: list[dict[str, Any]] = []
        failures: list[SkillError] = []

        def load_one() -> None:
            try:
                answers.append(self._with_host(self._load_into, LOAD_TIMEOUT))
            except SkillError as e:
                failures.append(e)

        others = [threading.Thread(target=load_one, daemon=True) for _ in range(free - 1)]
        for thread in others:
            thread.start()
        load_one()
        for thread in others:
            thread.join()
        if failures:
            raise failures[0]
        return answers[0]

    def _load_into(self, host: _Host) -> dict[str, Any]:
        if host.generation == self.generation and host.last_answer is not None:
            return host.last_answer
        host.last_answer = host.ask({"op": "load", "generation": self.generation,
                                     "files": self.sources, "config": self.config,
                                     "workspace": str(self.workspace)}, LOAD_TIMEOUT)
        host.generation = self.generation
        return host.last_answer

    # -- calling -------------------------------------------------------------------------
    def call(self, source: str, intent: str, msg: dict[str, Any], timeout: float,
             generation: int) -> dict[str, Any]:
        """Run a handler as the load `generation` defined it (hosts keep the last two)."""
        request = {"op": "call", "generation": generation, "source": source, "intent": intent,
                   "msg": msg}

        def answer(question: dict[str, Any]) -> dict[str, Any]:
            assert self.serve is not None
            try:
                return self.serve(question, msg)
            except Exception:  # the store failed: the skill learns it, the log has why
                log.exception("msg_id=%s a skill's %s failed in the gateway", msg.get("id"),
                              question.get("op"))
                return {"error": "the gateway could not do it (data/logs/error.log)",
                        "code": "internal_error"}

        def ask(host: _Host) -> dict[str, Any]:
            if host.generation < generation:  # it was busy during the load
                self._load_into(host)
            return host.ask(request, timeout, answer if self.serve else None)

        return self._with_host(ask, timeout, what=f"skill {intent}",
                               msg_id=str(msg.get("id", "")))

    def _with_host(self, work: Any, timeout: float, what: str = "loading skills",
                   msg_id: str = "-") -> Any:
        host = self._take(timeout, what)
        try:
            answer = work(host)
        except (TimeoutError, EOFError, OSError, ValueError) as e:
            log.warning("msg_id=%s %s: %s; replacing its worker", msg_id, what,
                        type(e).__name__)
            self._replace(host)
            if isinstance(e, TimeoutError):
                raise SkillError(f"{what} took longer than {timeout:.0f}s and was "
                                 f"stopped") from e
            raise SkillError(f"{what} crashed its worker process ({type(e).__name__}); "
                             f"it was restarted") from e
        self._give_back(host)
        return answer

    def _take(self, timeout: float, what: str) -> _Host:
        """A free host, or the first one given back after every earlier waiter got theirs:
        a host given back is handed to the oldest waiter, never left for a newcomer to take
        (with a plain condition, a client that sends again at once overtook the woken one)."""
        waiter = _Waiter()
        with self._free:
            if self._idle and not self._waiting:
                waiter.host = self._idle.popleft()
            else:
                self._waiting.append(waiter)
        if waiter.host is None:
            waiter.handed.wait(timeout)
        with self._free:
            if waiter.host is None:  # nobody handed one over in time: leave the line
                self._waiting.remove(waiter)
                raise SkillError(f"{what}: every skill worker is busy; try again shortly")
            host = waiter.host
        if host.granted != self.env:  # `skills.env` changed since it started
            log.info("skills.env changed: restarting skill host pid %d", host.proc.pid)
            host = self._restart(host)
        return host

    def _give_back(self, host: _Host) -> None:
        with self._free:
            if self._waiting:
                waiter = self._waiting.popleft()
                waiter.host = host
                waiter.handed.set()
            else:
                self._idle.append(host)

    def _add(self, host: _Host) -> None:
        self._all.append(host)
        self._give_back(host)

    def _replace(self, host: _Host) -> None:
        """Kill a host that misbehaved; its successor loads the same sources."""
        log.warning("killing skill host pid %d", host.proc.pid)
        self._give_back(self._restart(host))

    def _restart(self, host: _Host) -> _Host:
        """A fresh host (current `skills.env`) in place of `host`, loaded with the sources."""
        host.kill()
        self._all.remove(host)
        fresh = _Host(self.workspace, self.env)
        self._all.append(fresh)
        try:
            if self.sources:
                self._load_into(fresh)
        except (TimeoutError, EOFError, OSError, ValueError):
            log.exception("a replacement skill host failed to load the skills")
        return fresh

    def close(self) -> None:
        for host in self._all:
            host.kill()
        self._all.clear()
        self._idle.clear()
