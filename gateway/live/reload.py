"""Hot reload: files dropped into the workspace are live within a couple of seconds.

The file watcher (watchdog in a child process of its own, `gateway.live.watcher`) reports changes
under `skills/`, `knowledge/`, `memory/` and to `config.yaml`. `_classify` only notes what
changed and wakes the reloader; the reloader waits for the writes to settle, builds a new
snapshot (user code runs only in the skill host processes, never on the event loop), and swaps
one reference.
Messages in flight finish on the snapshot they started with. A config that fails validation is
refused and the last good one keeps running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.common.options import ConfigError
from gateway.common.secrets import lookup_secret
from gateway.common.workspace import Workspace
from gateway.config import Config, load_config
from gateway.knowledge import KnowledgeBase
from gateway.live.watcher import FileWatcher
from gateway.skills.catalog import SkillLoader, SkillSet

log = logging.getLogger(__name__)

SETTLE = 0.3  # seconds without events before reloading: editors write in several steps


def off_loop(func: Callable[[], Any]) -> Any:
    """CPU-heavy work (indexing) runs on gevent's thread pool inside the gateway."""
    from gevent import get_hub, monkey

    if monkey.is_module_patched("threading"):
        return get_hub().threadpool.apply(func)
    return func()


def _classify(workspace: Workspace, path: Path) -> str | None:
    """What a changed path means: "config", "skills", "knowledge", "memory", or None."""
    if path.name.startswith(".") or "__pycache__" in path.parts:
        return None
    if path == workspace.config_path:
        return "config"
    if path.is_relative_to(workspace.skills):
        return "skills"
    if path.is_relative_to(workspace.knowledge):
        return "knowledge"  # skills load knowledge too: both are rebuilt
    if path.is_relative_to(workspace.root / "memory"):
        return "memory"
    return None


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
        self.on_memory: Callable[[], object] = lambda: None  # memory/*.md edited by the owner
        self._pending: set[str] = set()
        self._wakeup = threading.Event()
        self._first_load = threading.Event()
        self._last_event = 0.0
        self._lock = threading.Lock()
        self._stopped = False
        self.watcher = FileWatcher(
            # Not the whole workspace: data/ changes on every message (database, logs).
            [(workspace.skills, True), (workspace.knowledge, True), (workspace.root, False),
             (workspace.root / "memory", False)],
            on_change=self._changed,
            on_restart=lambda: self._wake("config", "knowledge", "memory"))

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
        """Watch the workspace from now on. What changes before `loaded()` is applied after it,
        so a change during the first load of skills and knowledge is neither missed nor raced
        by that load."""
        for folder in (self.workspace.skills, self.workspace.knowledge,
                       self.workspace.root / "memory"):
            folder.mkdir(parents=True, exist_ok=True)
        self.watcher.start()
        threading.Thread(target=self._loop, name="reloader", daemon=True).start()

    def loaded(self) -> None:
        """The owner's first load of skills and knowledge is done: apply changes from now on."""
        self._first_load.set()

    def stop(self) -> None:
        self._stopped = True
        self._first_load.set()
        self._wakeup.set()
        self.watcher.stop()
        self.loader.hosts.close()

    def _changed(self, path: Path) -> None:
        what = _classify(self.workspace, path)
        if what:
            self._wake(what)

    def _wake(self, *what: str) -> None:
        with self._lock:
            self._pending.update(what)
            self._last_event = time.monotonic()
        self._wakeup.set()

    def _loop(self) -> None:
        self._first_load.wait()
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
                    if self.knowledge.meaning is not None:  # embeddings follow, in the background
                        self.knowledge.meaning.wake()
                if pending & {"skills", "knowledge", "config"}:  # hosts take the new config
                    self.load_skills()
                if "memory" in pending:
                    self.on_memory()
            except Exception:
                log.exception("reload failed; the previous version keeps running")
