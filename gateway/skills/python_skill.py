"""Load a Python skill from its source text: run it as a private module, collect its handlers.

This runs the user's code, so only the skill host process calls it, never the gateway.

The module gets `load_markdown` and `load_csv` in its namespace before it runs, because the
guide's example uses them without importing them. Every `Skill` subclass defined in the file is
instantiated once with no arguments; module-level functions marked with `@context.handle` are
collected too. Any exception while importing becomes a `SkillLoadError` naming the file.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import moltbot_sdk
from gateway.skills.errors import SkillLoadError
from gateway.skills.handlers import SkillHandler
from moltbot_sdk.skill import ATTRIBUTE, SCHEDULES, HandlerSpec, ScheduleSpec, Skill

Scheduled = list[tuple[SkillHandler, ScheduleSpec]]


def load_python_source(text: str, path: Path, label: str
                       ) -> tuple[list[SkillHandler], Scheduled]:
    """Handlers defined by `text` (the content of `path`, shown as `label` in errors), and
    the functions it schedules (`@context.schedule`), each reached by the intent
    `@<function>`."""
    module = _import(text, path, label)
    handlers: list[SkillHandler] = []
    scheduled: Scheduled = []

    def collect(function: Any, name: str) -> None:
        spec = getattr(function, ATTRIBUTE, None)
        if isinstance(spec, HandlerSpec):
            handlers.append(SkillHandler(spec, label, "python", function))
        for when in getattr(function, SCHEDULES, ()):
            if isinstance(when, ScheduleSpec):
                scheduled.append((SkillHandler(HandlerSpec(f"@{name}"), label, "python",
                                               function), when))

    for value in list(vars(module).values()):
        if inspect.isclass(value) and issubclass(value, Skill) and value is not Skill \
                and value.__module__ == module.__name__:
            try:
                instance = value()
            except Exception as e:
                raise SkillLoadError(label, f"{value.__name__}() failed: "
                                     f"{_last_line(e)}") from e
            for name, method in inspect.getmembers(instance, inspect.ismethod):
                collect(method, f"{value.__name__}.{name}")
        elif inspect.isfunction(value) and value.__module__ == module.__name__:
            collect(value, value.__name__)
    if not handlers and not scheduled:
        raise SkillLoadError(label, "no handler found: decorate a method of a Skill subclass "
                             "with @context.handle(...), e.g. @context.handle(command=\"/faq\")")
    return handlers, scheduled


def _import(text: str, path: Path, label: str) -> ModuleType:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"moltbot_skill_{path.stem}_{digest}"
    module = ModuleType(name)
    module.__file__ = str(path)
    module.load_markdown = moltbot_sdk.load_markdown  # type: ignore[attr-defined]
    module.load_csv = moltbot_sdk.load_csv  # type: ignore[attr-defined]
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        exec(compile(text, str(path), "exec"), module.__dict__)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        raise SkillLoadError(label, f"syntax error on line {e.lineno}: {e.msg}") from e
    except BaseException as e:
        sys.modules.pop(name, None)
        raise SkillLoadError(label, f"failed while importing: {_last_line(e, path)}") from e
    return module


def _last_line(e: BaseException, path: Path | None = None) -> str:
    """The error with the line to look at: the last one in the skill's own file, if any,
    since a `@context.handle(...)` mistake is raised inside moltbot_sdk, not where it was made."""
    frames = traceback.extract_tb(e.__traceback__)
    own = [f for f in frames if path is not None and f.filename == str(path)] or frames
    where = f" (line {own[-1].lineno})" if own else ""
    return f"{type(e).__name__}: {e}{where}"
