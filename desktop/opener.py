"""Opening a folder or file with the desktop's own handler (file manager, text viewer).

Always an argument list, never a shell: the path is the user's and may hold any character.
The opener may run until the window it opened closes, so it is reaped by a thread, not waited on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path


def open_path(path: Path) -> None:
    if sys.platform == "win32":
        os.startfile(path)  # type: ignore[attr-defined,unused-ignore]
        return
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    proc = subprocess.Popen([opener, str(path)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    threading.Thread(target=proc.wait, name="opener-reaper", daemon=True).start()
