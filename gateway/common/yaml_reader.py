"""Reading config.yaml's text safely: its size is measured before anything is built.

A YAML file can cost far more to read than its length says (aliases that expand
exponentially, nesting that makes the parser recurse until it fails), and config.yaml is read
by the gateway on every edit and by the console's check. So the event stream, which neither
recurses nor expands aliases, is measured first.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 32  # levels of nesting; config.yaml needs about six
MAX_VALUES = 20_000  # values once every alias is expanded; config.yaml needs hundreds


class YamlTooLarge(yaml.MarkedYAMLError):
    """YAML that would cost far more to read than any config.yaml: nested too deep (the
    parser would recurse until it fails), or aliases that expand exponentially (a "billion
    laughs": six levels of nine aliases are half a million values, seconds of CPU)."""


def check_yaml_size(text: str) -> None:
    """Measure `text` from its event stream (which neither recurses nor expands aliases);
    raises `YamlTooLarge` at the line where it goes past `MAX_DEPTH` or `MAX_VALUES`."""
    sizes: dict[str, int] = {}  # anchor -> how many values it expands to
    open_: list[tuple[str | None, int]] = [(None, 0)]  # (anchor, values so far) per level
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_) > MAX_DEPTH:
                raise YamlTooLarge(problem=f"nested deeper than {MAX_DEPTH} levels; a "
                                   "config.yaml needs about six", problem_mark=event.start_mark)
            open_.append((event.anchor, 1))
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            anchor, size = None, sizes.get(event.anchor or "", 1)
        else:
            continue
        if anchor:
            sizes[anchor] = size
        parent_anchor, parent_size = open_[-1]
        open_[-1] = (parent_anchor, parent_size + size)
        if parent_size + size > MAX_VALUES:
            raise YamlTooLarge(problem=f"its aliases (*name) expand to more than {MAX_VALUES} "
                               "values, each repeating all its &anchor holds; a config.yaml "
                               "needs far fewer: write the values out", problem_mark=
                               event.start_mark)


def read_yaml(text: str) -> Any:
    """Parse config.yaml's text safely: its size is checked before anything is built."""
    check_yaml_size(text)
    return yaml.safe_load(text)


def yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error as one line that says where and what to fix."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    what = getattr(e, "problem", None) or e
    return f"{where}{what}" if isinstance(e, YamlTooLarge) else f"{where}not valid YAML ({what})"
