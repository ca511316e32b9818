"""Releases of the libraries Moltbot runs on that are known to break it.

One table, package -> {version: why it is bad and what to do}. `moltbot doctor` warns when one
of these is installed; the tests check that pyproject.toml excludes each (so `pip install` users
never get one) and that no lock file in installers/lock/ pins one. Add a release the day it is
found bad; remove it once pyproject.toml's range no longer reaches it.
"""

from __future__ import annotations

KNOWN_BAD: dict[str, dict[str, str]] = {
    "watchdog": {
        "7.1.1": "deadlocks gevent's loop when run in-process (Moltbot runs its watcher in a "
                 "child process since 0.1.x, so it works, but it is excluded until upstream "
                 "fixes it)",
    },
}
