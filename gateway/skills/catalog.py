"""The skills folder as one immutable snapshot: which handlers exist and which files failed.

Hot reload builds a new `SkillSet` and swaps one reference, so a message in flight keeps the
snapshot it started with. A file that fails to load keeps its last good version (Python: the
last good source stays loaded in the skill hosts; scripts: the last good copy, kept under
`data/skill_cache/`, keeps running) and its error is reported, so a typo never takes a working
skill away. This module runs no user code: Python skills load in the skill host processes.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateway.skills.errors import SkillError, SkillLoadError
from gateway.skills.handlers import ScheduledHandler, SkillHandler, SkillResult
from gateway.skills.hostpool import SkillHostPool
from gateway.skills.options import SkillsConfig
from gateway.skills.script import ScriptSpec, json_answer, parse_header, run_script
from moltbot_sdk.skill import HandlerSpec, ScheduleSpec

log = logging.getLogger(__name__)

IGNORED = {"README.md", "__init__.py"}


@dataclass(frozen=True)
class SkillSet:
    handlers: tuple[SkillHandler, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)
    good_sources: dict[str, str] = field(default_factory=dict)  # Python: label -> source
    good_scripts: dict[str, SkillHandler] = field(default_factory=dict)
    schedules: tuple[ScheduledHandler, ...] = ()  # `@context.schedule` functions

    def by_command(self, word: str) -> SkillHandler | None:
        word = word.lower()
        return next((h for h in self.handlers if word in h.spec.commands()), None)

    def by_keyword(self, text: str) -> tuple[SkillHandler, str] | None:
        """The handler whose keyword occurs in the text; longer keywords win, then file order."""
        lowered = text.lower()
        matches = [(len(k), -i, h, k) for i, h in enumerate(self.handlers)
                   for k in h.spec.keywords if k in lowered]
        if not matches:
            return None
        _, _, handler, keyword = max(matches, key=lambda m: (m[0], m[1]))
        return handler, keyword

    def listing(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [
            {"intent": h.intent, "command": "/" + h.spec.commands()[0], "source": h.source,
             "kind": h.kind, "keywords": list(h.spec.keywords),
             "description": h.spec.description, "error": self.errors.get(h.source)}
            for h in self.handlers]
        loaded = {h.source for h in self.handlers}
        rows += [{"intent": None, "source": src, "kind": None, "error": err}
                 for src, err in self.errors.items() if src not in loaded]
        return rows


def is_script(path: Path) -> bool:
    """Executables are script skills, except .py files without a `# moltbot:` header."""
    if not os.access(path, os.X_OK):
        return False
    if path.suffix != ".py":
        return True
    with path.open(encoding="utf-8", errors="replace") as f:
        head = [next(f, "") for _ in range(30)]
    return any("moltbot:" in line for line in head)


class SkillLoader:
    """Builds snapshots from the skills folder; owns the skill hosts and the script cache."""

    def __init__(self, workspace: Path, hosts: SkillHostPool, default_timeout: float) -> None:
        self.workspace = workspace
        self.folder = workspace / "skills"
        self.cache = workspace / "data" / "skill_cache"
        self.hosts = hosts
        self.default_timeout = default_timeout

    def configure(self, options: SkillsConfig, host_config: dict[str, Any]) -> None:
        """A new config.yaml: hosts hand `host_config` (`gateway.config.for_skills`) to
        `context.tool`/`context.ask` from the next load on (the reloader reloads the skills
        after a config change)."""
        self.hosts.config = host_config
        self.hosts.env = dict(options.env)
        self.default_timeout = options.timeout

    def build(self, previous: SkillSet) -> SkillSet:
        errors: dict[str, str] = {}
        sources: dict[str, str] = {}
        scripts: dict[str, SkillHandler] = {}
        for path in self._files():
            label = f"skills/{path.name}"
            try:
                if is_script(path):
                    scripts[label] = self._script(path, label)
                elif path.suffix == ".py":
                    sources[label] = path.read_text(encoding="utf-8")
                else:
                    raise SkillLoadError(label, "not a skill: make it a .py file using "
                                         "moltbot_sdk, or an executable script with a "
                                         "`# moltbot: intent=...` header (and chmod +x)")
            except (SkillLoadError, OSError, UnicodeDecodeError) as e:
                problem = e.problem if isinstance(e, SkillLoadError) else f"cannot read: {e}"
                kept = previous.good_scripts.get(label)
                if kept:
                    scripts[label] = kept
                errors[label] = problem + (" (the previous version keeps running)"
                                           if kept else "")
        python, good_sources, scheduled = self._load_python(sources, previous, errors)
        for label, problem in errors.items():
            log.error("skill %s failed to load: %s", label, problem)
        handlers = _unique(python + list(scripts.values()), errors)
        return SkillSet(tuple(handlers), errors, good_sources, scripts, tuple(scheduled))

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.is_file()
                      and not p.name.startswith(".") and p.name not in IGNORED
                      and not p.name.endswith("~"))

    def _script(self, path: Path, label: str) -> SkillHandler:
        spec = parse_header(path, self.default_timeout)
        self.cache.mkdir(parents=True, exist_ok=True)
        copy = self.cache / path.name
        shutil.copy2(path, copy)  # the version that loaded is the version that runs
        spec = replace(spec, path=copy)
        handler_spec = HandlerSpec(spec.intent, spec.keywords, spec.command, spec.description,
                                   spec.timeout)

        def call(msg: dict[str, Any], s: ScriptSpec = spec) -> SkillResult:
            # `skills.env` reaches script skills too (their environment is otherwise minimal)
            out = run_script(s, msg, workspace=self.workspace, env=self.hosts.env)
            if s.output == "json":
                text, files = json_answer(s, out)
                return SkillResult(text, files=files)
            return SkillResult(out)

        return SkillHandler(handler_spec, label, "script", call)

    def _load_python(self, sources: dict[str, str], previous: SkillSet, errors: dict[str, str]
                     ) -> tuple[list[SkillHandler], dict[str, str], list[ScheduledHandler]]:
        if not sources and not previous.good_sources:
            return [], {}, []
        answer = self.hosts.load(sources)
        broken = {label: problem for label, problem in answer.get("errors", {}).items()}
        fallback = {label: previous.good_sources[label] for label in broken
                    if label in previous.good_sources}
        if fallback:  # put the last good source back in place of each broken one
            answer = self.hosts.load({**sources, **fallback})
        for label, problem in broken.items():
            errors[label] = problem + (" (the previous version keeps running)"
                                       if label in fallback else "")
        good = {label: text for label, text in {**sources, **fallback}.items()
                if label in answer.get("skills", {})}
        generation = self.hosts.generation
        handlers = [self._python_handler(label, HandlerSpec(**spec), generation)
                    for label, specs in answer.get("skills", {}).items() for spec in specs]
        scheduled = [self._scheduled(label, dict(found), generation)
                     for label, declared in answer.get("schedules", {}).items()
                     for found in declared]
        return handlers, good, scheduled

    def _scheduled(self, label: str, found: dict[str, Any], generation: int
                   ) -> ScheduledHandler:
        """A `@context.schedule` function, run through the host like a handler."""
        intent = str(found.pop("intent"))
        handler = self._python_handler(label, HandlerSpec(intent), generation)
        return ScheduledHandler(label, intent.lstrip("@"), ScheduleSpec(**found), handler.call)

    def _python_handler(self, label: str, spec: HandlerSpec, generation: int) -> SkillHandler:
        spec = replace(spec, keywords=tuple(spec.keywords))
        timeout = spec.timeout or self.default_timeout

        def call(msg: dict[str, Any]) -> SkillResult:
            answer = self.hosts.call(label, spec.intent, msg, timeout, generation)
            if answer.get("error"):
                log.error("msg_id=%s skill %s (%s) failed: %s\n%s", msg.get("id"), spec.intent,
                          label, answer["error"], answer.get("traceback", ""))
                raise SkillError(f"skill {spec.intent} failed; the details are in "
                                 f"data/logs/error.log")
            reply, files = answer.get("reply"), answer.get("files") or []
            if (reply is None or not str(reply).strip()) and not files:
                raise SkillError(f"skill {spec.intent} returned no reply")
            return SkillResult("" if reply is None else str(reply), answer.get("spans") or [],
                               files)

        return SkillHandler(spec, label, "python", call)


def _unique(handlers: list[SkillHandler], errors: dict[str, str]) -> list[SkillHandler]:
    """First come (by file name) keeps a command word; later clashes are reported."""
    kept: list[SkillHandler] = []
    taken: dict[str, str] = {}
    for handler in sorted(handlers, key=lambda h: h.source):
        clash = next((w for w in handler.spec.commands() if w in taken), None)
        if clash:
            problem = (f"/{clash} is already used by {taken[clash]}: rename the intent or "
                       f"command")
            earlier = errors.get(handler.source)
            errors[handler.source] = f"{earlier}; {problem}" if earlier else problem
            continue
        taken.update({w: handler.source for w in handler.spec.commands()})
        kept.append(handler)
    return kept
