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
- Arguments that name files stay in the working folder (the workspace): an operand or an
  `--option=value` that is an absolute path, holds `..` or `/`, or exists there is resolved
  (symlinks followed) and refused if it leads outside. Arguments that make a program read a
  list of further files (`--files0-from=...`, `@file`) are refused, since the names inside
  would escape the check.
- Time limit, process-group kill and output caps (stdout's first `max_output` bytes,
  stderr's last) are `gateway.process`'s, shared with script skills.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import process
from gateway.tools.base import Tool, ToolError, ToolRefused, check_arguments

log = logging.getLogger(__name__)

_STDERR_TAIL = 4000  # characters of stderr shown to the model by call()
_FILE_LIST_OPTIONS = frozenset({"--files0-from"})
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
        if self.cwd is not None:
            for arg in argv[1:]:
                self._confine(argv[0], arg)
        try:
            proc = process.start([program, *argv[1:]], cwd=self.cwd, env=self.env,
                                 with_stdin=stdin is not None)
        except OSError as e:
            raise ToolError(f"command: could not start {argv[0]!r}: {e.strerror or e}") from e
        log.info(
            "command: started %s with %d argument(s), pid %d", program, len(argv) - 1, proc.pid
        )
        result = process.collect(proc, None if stdin is None else stdin.encode("utf-8"),
                                 timeout=self.timeout, max_stdout=self.max_output,
                                 max_stderr=self.max_output)
        if result.timed_out:
            log.warning("command: pid %d ran over %s s; its group was killed", proc.pid,
                        self.timeout)
        return CommandResult(
            exit_code=result.exit_code,
            stdout=result.stdout.decode("utf-8", "replace"),
            stderr=result.stderr.decode("utf-8", "replace"),
            timed_out=result.timed_out,
            truncated=result.truncated,
        )

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

    def _confine(self, program: str, arg: str) -> None:
        """Refuse an argument that names a file outside the working folder."""
        assert self.cwd is not None
        name, eq, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
        if arg.startswith("@") or name in _FILE_LIST_OPTIONS:
            raise ToolRefused(f"command: refused {program} {arg!r}: it makes {program} read "
                              "file names from a file, which cannot be kept in the workspace")
        if arg.startswith("-") and not eq:
            return  # a flag; a value given as the next argument is checked as an operand
        root = os.path.realpath(self.cwd)
        candidate = os.path.join(root, value)
        looks_like_path = (os.path.isabs(value) or "/" in value or value in ("..", ".")
                           or os.path.lexists(candidate))
        if not looks_like_path:
            return
        resolved = os.path.realpath(candidate)
        if resolved != root and not resolved.startswith(root + os.sep):
            raise ToolRefused(f"command: refused {program} {arg!r}: it names a file outside "
                              f"the workspace {root}; copy what you need into it first")

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
