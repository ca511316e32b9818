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
- Arguments that name files stay in the working folder (the workspace): an operand, an
  `--option=value`, or a value attached to a short option (`-o/x`) that is an absolute path,
  holds `..` or `/`, or exists there is resolved (symlinks followed) and refused if it leads
  outside. Arguments that make a program read a list of further files (`--files0-from=...`
  and its abbreviations such as `--files0=`, `@file`) are refused, since the names inside
  would escape the check. This is a check of arguments, not a wall: a program's own script
  language (`sed '1r /etc/x'`) is not read. Skills are the owner's code and get it as is.
- For the model (`confinement`), the wall is the OS sandbox (`sandbox.py`): the program runs
  under bubblewrap and sees only the `tools.model_read` (read-only) and `model_write`
  folders of the workspace, with no network and resource limits. On top of it, arguments
  must stay in those folders, and `escapes.py`'s table refuses the features of ordinary
  programs that run programs or open files by design (`find -exec`, `sed e`, git aliases).
- Time limit, process-group kill and output caps (stdout's first `max_output` bytes,
  stderr's last) are `gateway.common.process`'s, shared with script skills.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.common import process
from gateway.tools import escapes
from gateway.tools.base import Tool, ToolError, ToolRefused, check_arguments
from gateway.tools.sandbox import Limits, Sandbox

log = logging.getLogger(__name__)

_STDERR_TAIL = 4000  # characters of stderr shown to the model by call()
_FILE_LIST_OPTIONS = ("--files0-from",)
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


@dataclass(frozen=True)
class Confinement:
    """Where the model's programs run: the sandbox, and the workspace folders it shows
    (`read` read-only, `write` read-write; paths relative to the workspace)."""

    sandbox: Sandbox
    read: tuple[str, ...]
    write: tuple[str, ...]
    keep: tuple[str, ...] = ()  # read-only even inside a `write` folder


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
        confinement: Confinement | None = None,
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
        if confinement is not None and cwd is None:
            raise ValueError("command tool: a confined tool needs the workspace as cwd")
        self.allowed = frozenset(allowed)
        self.timeout = timeout
        self.max_output = max_output
        self.cwd = cwd
        self.env = _child_env(env or {})
        self.confinement = confinement

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
        command = [program, *argv[1:]]
        if self.confinement is not None:
            command = self._sandboxed(program, argv, self.confinement)
        if self.cwd is not None:
            for arg in argv[1:]:
                self._confine(argv[0], arg)
        try:
            proc = process.start(command, cwd=self.cwd, env=self.env,
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

    def _sandboxed(self, program: str, argv: list[str], confined: Confinement) -> list[str]:
        """The model's argv: checked against the table of escapes, then wrapped in the
        sandbox; each `key=value` path the table names is confined like an operand."""
        if not confined.sandbox.shows(program):
            raise ToolRefused(
                f"command: refused {argv[0]!r} for the model: {program} is outside the system "
                "folders its sandbox shows (/usr, /bin, /lib); install the program there, or "
                "let a skill run it through context.tool")
        checked = escapes.check_argv(program, argv)
        for value in escapes.path_values(program, argv):
            self._confine(argv[0], value)
        assert self.cwd is not None
        limits = Limits(cpu_seconds=self.timeout)
        return confined.sandbox.wrap([program, *checked[1:]], root=self.cwd,
                                     read=confined.read, write=confined.write,
                                     keep=confined.keep, limits=limits)

    def _confine(self, program: str, arg: str) -> None:
        """Refuse an argument that names a file outside the working folder (for the model:
        outside the folders it may use)."""
        assert self.cwd is not None
        if arg.startswith("@"):
            raise ToolRefused(f"command: refused {program} {arg!r}: it makes {program} read "
                              "arguments from a file, which cannot be kept in the workspace")
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if any(name != "--" and option.startswith(name) for option in _FILE_LIST_OPTIONS):
                raise ToolRefused(
                    f"command: refused {program} {arg!r}: it makes {program} read file names "
                    "from a file (--files0-from, which getopt also takes abbreviated), and "
                    "those cannot be kept in the workspace")
            candidates = [value] if eq else []
        elif arg.startswith("-"):
            # A short option's value may be attached (`sort -o/x`, `-rno../x`): every tail.
            candidates = [arg[i:] for i in range(2, len(arg))]
        else:
            candidates = [arg]
        for value in candidates:
            self._confine_path(program, arg, value)

    def _confine_path(self, program: str, arg: str, value: str) -> None:
        assert self.cwd is not None
        root = os.path.realpath(self.cwd)
        candidate = os.path.join(root, value)
        looks_like_path = (os.path.isabs(value) or "/" in value or value in ("..", ".")
                           or os.path.lexists(candidate))
        if not looks_like_path:
            return
        resolved = os.path.realpath(candidate)
        if self.confinement is None:
            if resolved != root and not resolved.startswith(root + os.sep):
                raise ToolRefused(f"command: refused {program} {arg!r}: it names a file "
                                  f"outside the workspace {root}; copy what you need into "
                                  "it first")
            return
        # For the model: inside an allowed folder, or a name under the workspace whose first
        # part does not exist there (a sed script such as "s/a/b/" is no file).
        folders = dict.fromkeys(self.confinement.read + self.confinement.write)
        allowed = [os.path.realpath(os.path.join(root, f)) for f in folders]
        inside = resolved == root or resolved.startswith(root + os.sep)
        first = os.path.join(root, os.path.relpath(resolved, root).split(os.sep)[0])
        if not (inside and not os.path.lexists(first)) and resolved != root and not any(
                resolved == a or resolved.startswith(a + os.sep) for a in allowed):
            shown = ", ".join(f"{f}/" for f in folders) or "nothing"
            raise ToolRefused(f"command: refused {program} {arg!r} for the model: it names a "
                              f"file outside the folders the model may use ({shown}: "
                              "tools.model_read / tools.model_write)")

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
