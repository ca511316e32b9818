"""The lock files of installers/lock/, as the tests and `installers/test.sh --latest` read them.

A lock line is `name==version[ ; marker] \\` followed by its hashes; the same package may appear
twice with exclusive markers (uv's universal resolution forks on the Python version). Only the
lines whose marker holds for this interpreter apply here.

The watcher's test runs against several watchdog releases, each installed alone by test.sh into
`.venv/watchdog-matrix/<version>/` (from `installers/lock/watchdog-<version>.txt`); put that
folder first on a child process's PYTHONPATH to run it on that release: `watchdog_matrix()`.

Run `python -m tests.locks diff [LOCK [COLUMN]]` to print what this environment has that differs
from a lock (test.sh --latest does after installing the newest releases, COLUMN "latest").
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from packaging.markers import Marker

from gateway.ops.doctor import canonical_name, installed_versions

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "installers" / "lock"
MATRIX = ROOT / ".venv" / "watchdog-matrix"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def read_lock(path: Path) -> dict[str, str]:
    """Canonical package name -> the version the lock pins for this interpreter and platform."""
    pins: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line or line[0] in " #\t":
            continue
        match = _PIN.match(line)
        if not match:
            raise ValueError(f"{path}:{number}: not a `name==version` pin: {line!r}; "
                             f"regenerate the file with ./installers/lock.sh")
        name, version, marker = match.groups()
        if marker is None or Marker(marker).evaluate():
            pins[canonical_name(name)] = version
    return pins


def lock_differences(path: Path) -> list[tuple[str, str, str]]:
    """(package, locked, installed) for each pin this environment does not hold ("-": absent)."""
    have = installed_versions()
    return [(name, version, have.get(name, "-"))
            for name, version in sorted(read_lock(path).items()) if have.get(name) != version]


def watchdog_matrix() -> dict[str, Path]:
    """watchdog version -> the folder holding that release alone, for each matrix lock file.

    Raises FileNotFoundError, naming the command that installs them, if one is missing."""
    folders = {}
    for lock in sorted(LOCKS.glob("watchdog-*.txt")):
        version = lock.stem.removeprefix("watchdog-")
        folder = MATRIX / version
        if not (folder / "watchdog").is_dir():
            raise FileNotFoundError(f"{folder} holds no watchdog {version}: ./installers/test.sh "
                                    f"installs it (from {lock.relative_to(ROOT)})")
        folders[version] = folder
    return folders


def format_table(rows: list[tuple[str, str, str]], header: tuple[str, str, str]) -> str:
    """Rows as aligned columns under `header`, for a terminal."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in [header, *rows])


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 3 or argv[0] != "diff":
        print("usage: python -m tests.locks diff [LOCK [COLUMN]] (default: "
              "installers/lock/test.txt, installed)", file=sys.stderr)
        return 2
    path = Path(argv[1]) if len(argv) >= 2 else LOCKS / "test.txt"
    column = argv[2] if len(argv) == 3 else "installed"
    rows = lock_differences(path)
    if not rows:
        print(f"every package is at the version {path} pins")
    else:
        print(f"{len(rows)} packages differ from {path}:")
        print(format_table(rows, ("package", "locked", column)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
