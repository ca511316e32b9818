"""A stand-in `docker` for machines without a compose engine: `docker compose version` answers
like Docker's plugin, and every other command line is recorded (argv and working folder, one
JSON line each) and answered with a line of text. It checks the command line the compose tool
builds, never that containers run: tests/test_compose_engine.py does that with a real engine.
A compose file whose text holds "broken" makes `up` fail as an engine would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SCRIPT = '''#!{python}
import json, os, sys
args = sys.argv[1:]
if args == ["compose", "version"]:
    print("Docker Compose version v2.99.0-fake")
    sys.exit(0)
with open({log!r}, "a") as log:
    log.write(json.dumps({{"argv": sys.argv, "cwd": os.getcwd()}}) + "\\n")
file = args[args.index("-f") + 1]
if "up" in args and "broken" in open(file).read():
    print("Error: image moltbot/broken: not found", file=sys.stderr)
    sys.exit(1)
print({{"up": "Container started", "down": "Container removed", "ps": "NAME  STATUS\\nweb  Up",
       "logs": "web  | listening on 8080"}}.get(args[5], "done"))
'''


def install(folder: Path) -> Path:
    """Write the fake `docker` into `folder` (put it first on PATH); returns its log file."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "docker-calls.jsonl"
    script = folder / "docker"
    script.write_text(SCRIPT.format(python=sys.executable, log=str(log)), encoding="utf-8")
    script.chmod(0o755)
    return log


def calls(log: Path) -> list[dict[str, Any]]:
    """What the fake engine was asked, in order."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
