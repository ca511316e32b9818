"""Hot reload: files dropped into the workspace are live within a couple of seconds.

watchdog reports changes under `skills/`, `knowledge/` and to `config.yaml`. The event handler
only notes the change and wakes the reloader (it runs on the gevent hub and must be quick); the
reloader waits for the writes to settle, builds a new snapshot (user code runs only in the skill
host processes, never on the event loop), and swaps one reference. Messages in flight finish on
the snapshot they started with. A config that fails validation is refused and the last good one
keeps running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from gateway.config import Config, ConfigError, load_config
from gateway.knowledge import KnowledgeBase
from gateway.secrets import lookup_secret
from gateway.skills.catalog import SkillLoader, SkillSet
from gateway.workspace import Workspace

log = logging.getLogger(__name__)

SETTLE = 0.3  # seconds without events before reloading: editors write in several steps


def off_loop(func: Callable[[], Any]) -> Any:
    """CPU-heavy work (indexing) runs on gevent's thread pool inside the gateway."""
    from gevent import get_hub, monkey

    if monkey.is_module_patched("threading"):
        return get_hub().threadpool.apply(func)
    return func()


class _Changes(FileSystemEventHandler):
    def __init__(self, workspace: Workspace, wake: Callable[[str], None]) -> None:
        self.workspace = workspace
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = Path(str(raw or ""))
            if not raw or path.name.startswith(".") or "__pycache__" in path.parts:
                continue
            if path == self.workspace.config_path:
                self.wake("config")
            elif path.is_relative_to(self.workspace.skills):
                self.wake("skills")
            elif path.is_relative_to(self.workspace.knowledge):
                self.wake("knowledge")  # skills load knowledge too: both are rebuilt


class Reloader:
    """Owns the current skills snapshot and config; `on_skills`/`on_config` receive new ones."""

    def __init__(self, workspace: Workspace, config: Config, loader: SkillLoader,
                 knowledge: KnowledgeBase, *, on_skills: Callable[[SkillSet], None]) -> None:
        self.workspace = workspace
        self.loader = loader
        self.knowledge = knowledge
        self.config = config
        self.skills = SkillSet()
        self.config_error: str | None = None
        self.on_skills = on_skills
        self.on_config: Callable[[Config], None] = lambda config: None  # set by the owner
        self._pending: set[str] = set()
        self._wakeup = threading.Event()
        self._last_event = 0.0
        self._lock = threading.Lock()
        self._stopped = False
        self._observer: Any = None

    def load_skills(self) -> SkillSet:
        self.skills = self.loader.build(self.skills)
        self.on_skills(self.skills)
        log.info("skills loaded: %d handlers, %d files with errors",
                 len(self.skills.handlers), len(self.skills.errors))
        return self.skills

    def reload_config(self) -> None:
        """Read config.yaml again and hand it to `on_config`, which may refuse it too (with
        ConfigError, for what only the running gateway can check); refused, the last good
        config keeps running."""
        try:
            config = load_config(self.workspace.config_path, lookup_secret)
            self.on_config(config)
        except ConfigError as e:
            self.config_error = str(e)
            log.error("config.yaml changed but is not valid; keeping the last good config.\n%s",
                      e)
            return
        self.config_error = None
        self.config = config
        log.info("config.yaml reloaded")

    def start(self) -> None:
        self.load_skills()
        for folder in (self.workspace.skills, self.workspace.knowledge):
            folder.mkdir(parents=True, exist_ok=True)
        handler = _Changes(self.workspace, self._wake)
        self._observer = Observer()
        # Not the whole workspace: data/ changes on every message (database, logs).
        self._observer.schedule(handler, str(self.workspace.skills), recursive=True)
        self._observer.schedule(handler, str(self.workspace.knowledge), recursive=True)
        self._observer.schedule(handler, str(self.workspace.root), recursive=False)
        self._observer.daemon = True
        self._observer.start()
        threading.Thread(target=self._loop, name="reloader", daemon=True).start()

    def stop(self) -> None:
        self._stopped = True
        self._wakeup.set()
        if self._observer is not None:
            self._observer.stop()
        self.loader.hosts.close()

    def _wake(self, what: str) -> None:
        with self._lock:
            self._pending.add(what)
            self._last_event = time.monotonic()
        self._wakeup.set()

    def _loop(self) -> None:
        while not self._stopped:
            self._wakeup.wait()
            while (quiet := self._last_event + SETTLE - time.monotonic()) > 0:
                time.sleep(quiet)  # let the writes settle: one save is several events
            with self._lock:
                self._wakeup.clear()
                pending, self._pending = self._pending, set()
            try:
                if "config" in pending:
                    self.reload_config()
                if "knowledge" in pending:
                    off_loop(self.knowledge.reload)
                if pending & {"skills", "knowledge", "config"}:  # hosts take the new config
                    self.load_skills()
            except Exception:
                log.exception("reload failed; the previous version keeps running")
