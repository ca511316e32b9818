"""The gateway's own files are the owner's alone: folders 0700, files 0600, whatever the umask.

`data/` holds the message store (every conversation), its WAL, the logs and the pid file;
config.yaml may hold tokens. Both entry points (the CLI and the gateway process) set a private
umask first, so everything they create is private from birth, and the gateway tightens what an
older version or another tool left readable when it starts.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

UMASK = 0o077


def private_umask() -> None:
    """Files and folders this process (and its children) creates are private from the start."""
    os.umask(UMASK)


def tighten(*paths: Path) -> None:
    """Folders 0700 and files 0600 under each path (each may be a folder or a file)."""
    for top in paths:
        if not top.exists() or top.is_symlink():
            continue
        if top.is_file():
            _chmod(top, 0o600)
            continue
        _chmod(top, 0o700)
        for folder, dirs, files in os.walk(top):
            for name in dirs:
                _chmod(Path(folder, name), 0o700)
            for name in files:
                _chmod(Path(folder, name), 0o600)


def _chmod(path: Path, mode: int) -> None:
    if path.is_symlink():
        return  # never change what a link points at
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, mode)
