"""Script skills: an executable file in `skills/` (any language with a shebang) is a skill.

A few comment lines near the top say how the skill is reached, for example:

    #!/bin/sh
    # moltbot: intent=file_process
    # moltbot: command=/wc
    # moltbot: keywords=word count, 字数
    # moltbot: description=Count the lines, words and characters of a workspace file
    # moltbot: timeout=10
    # moltbot: output=json

(`//` and `--` comments work too, for languages that use them.)

What a script can rely on when it runs:
- It is executed directly from an argument list, never through a shell, and the message text
  never appears on its command line: `;`, `$(...)` or backticks in a message are plain data.
- stdin is the message as one UTF-8 JSON object (`text`, `id`, `sender`, `chat`, `channel`,
  `session`, `files`: `[{"name", "media_type", "size", "path"}]`, the absolute paths of the
  files sent with it); the same ids are in MOLTBOT_MSG_ID, MOLTBOT_CHAT, MOLTBOT_CHANNEL,
  MOLTBOT_SENDER and MOLTBOT_SESSION (empty when unknown), the files' paths in MOLTBOT_FILES
  (one a line), and MOLTBOT_HOME is the workspace.
- The working folder is the workspace; the environment is minimal (PATH, HOME, LANG, TZ and the
  variables above), never the gateway's own, which may hold API keys.
- Its stripped stdout (up to 64 KiB) is the reply. A non-zero exit, an empty reply or running
  past the time limit is an error; on time-out the script's whole process group is killed.
  With `output=json` in the header, stdout is instead one JSON object `{"reply": "...",
  "files": ["path", ...]}`: the files (inside the workspace) go back to the sender.

Scripts are the user's own code running as the gateway's user: the limits above keep a buggy
script from hanging or confusing the gateway, they do not sandbox a hostile one. Output is
bounded (`gateway.common.process`, shared with the command tool): the first 64 KiB of stdout and the
last 4,000 bytes of stderr, which go to the log and the trace, never to the sender.

Under gevent (the gateway monkey-patches subprocess and threading) waiting for the script is
cooperative, so a slow script never stalls other messages.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.common import process
from gateway.skills.errors import SkillError, SkillLoadError, shown_path

log = logging.getLogger(__name__)

HEADER_LINES = 30  # the header must be within the file's first lines, so loading stays cheap
MAX_REPLY = 64 * 1024  # bytes of stdout kept as the reply
_LINE_LIMIT = 4096  # bytes read per header line: a binary file must not be read whole
_STDERR_KEPT = 4000  # bytes of stderr kept (its end) for the log and the trace
_KEYS = ("intent", "keywords", "command", "description", "timeout", "output")
_OUTPUTS = ("text", "json")
_PASSED_ENV = ("PATH", "HOME", "LANG", "TZ")
# The SDK's rule for intents and command words (moltbot_sdk.skill), so both kinds read alike.
_WORD = re.compile(r"^[A-Za-z0-9_\-]+$")
_HEADER = re.compile(r"^\s*(?:#|//|--)\s*moltbot\s*:(.*)$", re.IGNORECASE)
_MSG_ENV = {  # variable -> keys of the message dict it is taken from, first present wins
    "MOLTBOT_MSG_ID": ("msg_id", "id"),
    "MOLTBOT_CHAT": ("chat",),
    "MOLTBOT_CHANNEL": ("channel",),
    "MOLTBOT_SENDER": ("sender",),
    "MOLTBOT_SESSION": ("session",),
}


@dataclass(frozen=True)
class ScriptSpec:
    """A script skill as its header describes it; `timeout` is in seconds and always set."""

    path: Path
    intent: str
    keywords: tuple[str, ...]
    command: str | None
    description: str
    timeout: float
    output: str = "text"  # "json": stdout is {"reply", "files"}


def parse_header(path: Path, default_timeout: float = 30.0) -> ScriptSpec:
    """Read a script's `moltbot:` header; raises SkillLoadError saying what to fix.

    Only the first HEADER_LINES lines are read. A missing intent defaults to the file's stem,
    a missing timeout to `default_timeout`; keywords are lowercased so matching ignores case.
    """
    if not default_timeout > 0:
        raise ValueError(f"default_timeout must be positive, got {default_timeout!r}")
    path = Path(path)
    shown = shown_path(path)
    if not path.is_file():
        raise SkillLoadError(path, "not a regular file; a script skill is one executable file")
    if not os.access(path, os.X_OK):
        raise SkillLoadError(path, f"not executable; run `chmod +x {shown}` to make it a skill")
    lines = _read_head(path)
    if not lines or not lines[0].startswith("#!"):
        raise SkillLoadError(path, "no shebang: make the first line name the interpreter, "
                                   "e.g. `#!/bin/sh` or `#!/usr/bin/env python3`")
    values: dict[str, tuple[int, str]] = {}
    keywords: list[str] = []
    for number, line in enumerate(lines[1:], start=2):
        match = _HEADER.match(line)
        if match is None:
            continue
        key, eq, value = match.group(1).partition("=")
        key, value = key.strip().lower(), value.strip()
        if not eq or not key:
            raise SkillLoadError(path, f"line {number}: expected `# moltbot: key=value`, "
                                       "e.g. `# moltbot: intent=file_process`")
        if key not in _KEYS:
            raise SkillLoadError(path, f"line {number}: unknown header key {key!r}; "
                                       f"use one of {', '.join(_KEYS)}")
        if key == "keywords":  # may be spread over several lines
            keywords += [k.strip().lower() for k in re.split(r"[,，]", value)]
            continue
        if key in values:
            raise SkillLoadError(path, f"line {number}: {key} is already set on line "
                                       f"{values[key][0]}; keep one of the two lines")
        values[key] = (number, value)
    return ScriptSpec(
        path=path,
        intent=_intent(path, values.get("intent")),
        keywords=tuple(dict.fromkeys(k for k in keywords if k)),
        command=_command(path, values.get("command")),
        description=values.get("description", (0, ""))[1],
        timeout=_timeout(path, values.get("timeout"), default_timeout),
        output=_output(path, values.get("output")),
    )


def run_script(spec: ScriptSpec, msg: dict[str, Any], *, workspace: Path,
               env: dict[str, str] | None = None) -> str:
    """Run the script for one message and return its reply; raises SkillError on failure.

    See the module docstring for what the script sees. `env` adds (or overrides) variables.
    """
    data = json.dumps(msg, ensure_ascii=False, default=str).encode("utf-8", "replace")
    child_env = _child_env(msg, workspace, env or {})
    msg_id = child_env["MOLTBOT_MSG_ID"]
    argv = [str(spec.path.absolute())]  # absolute: a relative one would resolve inside cwd
    try:
        result = process.run(argv, stdin=data, cwd=workspace, env=child_env,
                             timeout=spec.timeout, max_stdout=MAX_REPLY + 4,
                             max_stderr=_STDERR_KEPT)
    except OSError as e:
        log.error("msg_id=%s skill %s: cannot start %s: %s", msg_id, spec.intent, spec.path, e)
        raise SkillError(f"skill {spec.intent} could not start "
                         f"({e.strerror or type(e).__name__})", str(e)) from e
    stderr = result.stderr.decode("utf-8", "replace").strip()
    if result.timed_out:
        log.warning("msg_id=%s skill %s ran over %ss; its process group was killed",
                    msg_id, spec.intent, spec.timeout)
        raise SkillError(f"skill {spec.intent} took longer than {spec.timeout:g}s "
                         "and was stopped", stderr)
    if result.exit_code != 0:
        log.warning("msg_id=%s skill %s exited with %d: %s",
                    msg_id, spec.intent, result.exit_code, stderr)
        how = (f"was killed by signal {-result.exit_code}" if result.exit_code < 0
               else f"failed with exit code {result.exit_code}")
        raise SkillError(f"skill {spec.intent} {how}", stderr or "(no error output)")
    reply = _reply_text(result.stdout).strip()
    if result.truncated and len(result.stdout) > MAX_REPLY:
        log.warning("msg_id=%s skill %s printed more than %d bytes; reply cut",
                    msg_id, spec.intent, MAX_REPLY)
    if not reply:
        raise SkillError(f"skill {spec.intent} printed no reply", stderr)
    return reply


def json_answer(spec: ScriptSpec, stdout: str) -> tuple[str, list[str]]:
    """The reply text and files of an `output=json` script; raises SkillError."""
    try:
        answer = json.loads(stdout)
    except ValueError as e:
        raise SkillError(f"skill {spec.intent} (output=json) printed something that is not "
                         "JSON", stdout[:300]) from e
    files = answer.get("files") if isinstance(answer, dict) else None
    reply = answer.get("reply") if isinstance(answer, dict) else None
    if not isinstance(answer, dict) or not isinstance(reply, str | None) or \
            not isinstance(files, list | None) or not (reply or files):
        raise SkillError(f"skill {spec.intent} (output=json) must print an object "
                         '{"reply": "...", "files": ["path", ...]}', stdout[:300])
    if not all(isinstance(f, str) for f in files or []):
        raise SkillError(f'skill {spec.intent} (output=json): "files" must be paths',
                         stdout[:300])
    return reply or "", list(files or [])


def _reply_text(out: bytes) -> str:
    """Decode at most MAX_REPLY bytes, dropping a character the cut split in two."""
    return codecs.getincrementaldecoder("utf-8")("replace").decode(out[:MAX_REPLY], final=False)


def _child_env(msg: dict[str, Any], workspace: Path, extra: dict[str, str]) -> dict[str, str]:
    """A small environment: a few harmless variables and the message's ids, never secrets."""
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", os.defpath).split(os.pathsep)
                                  if os.path.isabs(p))  # "." would let the workspace shadow tools
    env["MOLTBOT_HOME"] = str(Path(workspace).absolute())
    for name, keys in _MSG_ENV.items():
        value = next((msg[k] for k in keys if msg.get(k) is not None), "")
        env[name] = str(value).replace("\x00", "")
    env["MOLTBOT_FILES"] = "\n".join(str(f.get("path", "")) for f in msg.get("files") or []
                                      if isinstance(f, dict)).replace("\x00", "")
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"script skill env entries must be strings, got {key!r}={value!r}")
        env[key] = value
    return env


def _read_head(path: Path) -> list[str]:
    """The first HEADER_LINES lines as text, without line endings."""
    try:
        with path.open("rb") as f:
            raw = [f.readline(_LINE_LIMIT) for _ in range(HEADER_LINES)]
    except OSError as e:
        raise SkillLoadError(path, f"cannot read the file ({e.strerror or type(e).__name__}); "
                                   "check that the gateway's user may read it") from e
    try:
        return [line.decode("utf-8").rstrip("\r\n") for line in raw if line]
    except UnicodeDecodeError as e:
        raise SkillLoadError(path, "the header is not UTF-8 text; save the file as UTF-8") from e


def _intent(path: Path, given: tuple[int, str] | None) -> str:
    """The header's intent, or the file's stem; one word, as Python skills' intents are."""
    intent = path.stem if given is None else given[1]
    if _WORD.match(intent):
        return intent
    if given is None:
        raise SkillLoadError(path, f"the file name {path.stem!r} is not a usable intent; add a "
                                   "line `# moltbot: intent=word` (letters, digits, _ and -)")
    raise SkillLoadError(path, f"line {given[0]}: intent={intent!r} must be one word of "
                               "letters, digits, _ and -, e.g. intent=file_process")


def _command(path: Path, given: tuple[int, str] | None) -> str | None:
    """The header's command, which must be `/` and one word."""
    if given is None:
        return None
    number, command = given
    if not command.startswith("/") or not _WORD.match(command[1:]):
        raise SkillLoadError(path, f"line {number}: command={command!r} must be a slash and "
                                   "one word (letters, digits, _ and -), e.g. command=/wc")
    return command


def _output(path: Path, given: tuple[int, str] | None) -> str:
    """The header's output kind: `text` (stdout is the reply) or `json`."""
    if given is None:
        return "text"
    if given[1].lower() not in _OUTPUTS:
        raise SkillLoadError(path, f"line {given[0]}: output={given[1]!r} must be text or "
                                   "json (json: print {\"reply\": ..., \"files\": [...]})")
    return given[1].lower()


def _timeout(path: Path, given: tuple[int, str] | None, default: float) -> float:
    """The header's timeout in seconds: a positive, finite number."""
    if given is None:
        return default
    number, text = given
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise SkillLoadError(path, f"line {number}: timeout={text!r} is not a number of "
                                   "seconds above 0; write e.g. timeout=10")
    return seconds
