"""Run allowlisted programs with an argument list, a time limit and an output cap.

What the caller can rely on:
- No shell is ever involved: `argv` is a list passed to exec as is, so `;`, `|`, `$(...)` in
  an argument are plain text. A shell string is refused outright.
- argv[0] runs only if listed in `allowed` (tools.allowed_commands): a bare name is looked up
  on the absolute entries of PATH (never ".", so a script dropped into the workspace cannot
  shadow a listed command); a name containing "/" runs only if that exact absolute path is
  listed. An empty list refuses everything; there is no "*".
- Listing a shell or interpreter (sh, bash, python, node, env, xargs, ...) gives the model
  full access to the machine as the gateway's user; the allowlist cannot narrow that down.
- The child gets a small environment (PATH, HOME, locale, TZ, TMPDIR plus `env`), never the
  gateway's own, which may hold API keys.
- The child leads its own process group; on time-out the whole group is killed.
- Output is read as it comes and capped per stream: stdout keeps its first `max_output`
  bytes, stderr its last (the error is usually at the end); the rest is read and dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gateway.tools.base import Tool, ToolError, ToolRefused, check_arguments

log = logging.getLogger(__name__)

_CHUNK = 65536
_GRACE = 2.0  # seconds to let a killed process group release its pipes
_STDERR_TAIL = 4000  # characters of stderr shown to the model by call()
_PASSED_ENV = ("HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
_FULL_ACCESS = frozenset(
    {"sh", "bash", "dash", "zsh", "ksh", "fish", "python", "python3", "perl", "ruby", "node"}
    | {"env", "xargs", "sudo", "doas"}
)


_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "argv": {
            "type": "array",
            "items": {"type": "string"},
            "description": 'Program and arguments, e.g. ["ls", "-l"].',
        },
        "stdin": {"type": "string", "description": "Text sent to the program's input."},
    },
    "required": ["argv"],
}


@dataclass(frozen=True)
class CommandResult:
    """What a run produced; exit_code is negative (-signal) when the process was killed."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    truncated: bool


class _Capture:
    """A bounded buffer for one output stream, keeping either its head or its tail."""

    def __init__(self, limit: int, *, keep_tail: bool) -> None:
        self.data = bytearray()
        self.limit = limit
        self.keep_tail = keep_tail
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        if self.keep_tail:
            self.data += chunk
            excess = len(self.data) - self.limit
            if excess > 0:
                del self.data[:excess]
                self.truncated = True
            return
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.truncated = True
        self.data += chunk[: max(room, 0)]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class CommandTool(Tool):
    """Runs one allowlisted program per call; see the module docstring for the guarantees."""

    name = "command"
    description = (
        "Run an allowed program with an argument list (no shell). "
        "Returns the exit code, stdout and the end of stderr."
    )
    parameters = _PARAMETERS

    def __init__(
        self,
        allowed: list[str],
        timeout: float = 30,
        max_output: int = 64 * 1024,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        for entry in allowed:
            if not isinstance(entry, str) or not entry or entry == "*":
                raise ValueError(
                    f"tools.allowed_commands: {entry!r} is not a command; "
                    "list each program by name or absolute path ('*' is not supported)"
                )
            if "/" in entry and not os.path.isabs(entry):
                raise ValueError(
                    f"tools.allowed_commands: {entry!r} is a relative path; "
                    "use a bare name (looked up on PATH) or an absolute path"
                )
            if os.path.basename(entry) in _FULL_ACCESS:
                log.warning("tools.allowed_commands lists %s, which can run any code", entry)
        if timeout <= 0 or max_output <= 0:
            raise ValueError("command tool: timeout and max_output must be positive")
        if cwd is not None and not Path(cwd).is_dir():
            raise ValueError(f"command tool: working folder {cwd} is not a directory")
        self.allowed = frozenset(allowed)
        self.timeout = timeout
        self.max_output = max_output
        self.cwd = cwd
        self.env = _child_env(env or {})

    def run(self, argv: list[str], stdin: str | None = None) -> CommandResult:
        """Run argv[0] with the rest as literal arguments; raises ToolRefused if not allowed."""
        if isinstance(argv, (str, bytes)):
            raise ToolRefused(
                f"command: refused {argv[:200]!r}: pass an argument list, not a shell string, "
                'e.g. ["ls", "-l"]'
            )
        if not isinstance(argv, (list, tuple)) or not argv:
            raise ToolError("command: argv must be a non-empty list of strings")
        if not all(isinstance(a, str) for a in argv):
            raise ToolError("command: every element of argv must be a string")
        if any("\x00" in a for a in argv):
            raise ToolRefused("command: refused argv: arguments may not contain NUL bytes")
        if stdin is not None and not isinstance(stdin, str):
            raise ToolError(f"command: stdin must be a string, got {type(stdin).__name__}")
        program = self._resolve(argv[0])
        try:
            proc = subprocess.Popen(
                [program, *argv[1:]],
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            raise ToolError(f"command: could not start {argv[0]!r}: {e.strerror or e}") from e
        log.info(
            "command: started %s with %d argument(s), pid %d", program, len(argv) - 1, proc.pid
        )
        try:
            return self._collect(proc, None if stdin is None else stdin.encode("utf-8"))
        finally:
            if proc.returncode is None:
                _kill_group(proc)
                proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()

    def call(self, arguments: dict[str, Any]) -> str:
        args = check_arguments(self.name, arguments)
        result = self.run(args.get("argv"), args.get("stdin"))  # type: ignore[arg-type]
        status = f"exit code: {result.exit_code}"
        if result.timed_out:
            status += (
                f" (killed after the {self.timeout} s time limit; "
                "raise tools.command_timeout in config.yaml to allow longer runs)"
            )
        if result.truncated:
            status += f" (output cut to {self.max_output} bytes per stream)"
        stderr = result.stderr[-_STDERR_TAIL:]
        return f"{status}\nstdout:\n{result.stdout}\nstderr (end):\n{stderr}"

    def _resolve(self, name: str) -> str:
        """The path to execute for argv[0], or ToolRefused saying how to allow it."""
        fix = "add it to tools.allowed_commands in config.yaml to allow it"
        if not self.allowed:
            raise ToolRefused(f"command: refused {name!r}: no commands are allowed; {fix}")
        if "/" in name:
            if os.path.isabs(name) and name in self.allowed:
                return name
            raise ToolRefused(
                f"command: refused {name!r}: a program given by path runs only if that exact "
                f"absolute path is in tools.allowed_commands; {fix}, or use a listed name"
            )
        search = self.env.get("PATH", os.defpath)
        found = shutil.which(name, path=search)
        # An absolute entry allows the bare name only when PATH leads exactly there:
        # comparing real paths would let a multi-call binary (busybox) stand in for another.
        if name in self.allowed or (found is not None and found in self.allowed):
            if found is None:
                raise ToolError(f"command: {name!r} is allowed but not found on PATH {search}")
            return found
        allowed = ", ".join(sorted(self.allowed))
        raise ToolRefused(
            f"command: refused {name!r}: it is not in tools.allowed_commands ({allowed}); {fix}"
        )

    def _collect(self, proc: subprocess.Popen[bytes], data: bytes | None) -> CommandResult:
        out = _Capture(self.max_output, keep_tail=False)
        err = _Capture(self.max_output, keep_tail=True)
        deadline = time.monotonic() + self.timeout
        with selectors.DefaultSelector() as sel:
            assert proc.stdout is not None and proc.stderr is not None
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            if proc.stdin is not None:
                os.set_blocking(proc.stdin.fileno(), False)
                sel.register(proc.stdin, selectors.EVENT_WRITE, memoryview(data or b""))
            finished = _pump(sel, deadline, proc.stdin)
            if finished:
                try:
                    proc.wait(timeout=max(deadline - time.monotonic(), 0))
                except subprocess.TimeoutExpired:
                    finished = False
            if not finished:
                log.warning(
                    "command: pid %d ran over %s s, killing its group", proc.pid, self.timeout
                )
                _kill_group(proc)
                _pump(sel, time.monotonic() + _GRACE, proc.stdin)
                proc.wait()
        assert proc.returncode is not None
        return CommandResult(
            exit_code=proc.returncode,
            stdout=out.text(),
            stderr=err.text(),
            timed_out=not finished,
            truncated=out.truncated or err.truncated,
        )


def _pump(sel: selectors.BaseSelector, deadline: float, stdin: IO[bytes] | None) -> bool:
    """Feed stdin and drain the outputs until every pipe closes (True) or the deadline passes."""
    while sel.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        for key, _ in sel.select(remaining):
            if key.fileobj is stdin:
                view: memoryview = key.data
                try:
                    written = os.write(key.fd, view[:_CHUNK])
                except BlockingIOError:
                    continue
                except BrokenPipeError:  # the program stopped reading: drop the rest
                    written = len(view)
                view = view[written:]
                if view:
                    sel.modify(key.fileobj, selectors.EVENT_WRITE, view)
                else:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()  # type: ignore[union-attr]
                continue
            chunk = os.read(key.fd, _CHUNK)
            if chunk:
                key.data.add(chunk)
            else:
                sel.unregister(key.fileobj)
    return True


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group; only called before the leader is reaped, so its id is ours."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment a program sees: a few harmless variables, PATH without relative parts."""
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    env["PATH"] = os.environ.get("PATH", os.defpath)
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"command tool: env entries must be strings, got {key!r}")
        env[key] = value
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if os.path.isabs(p))
    return env
