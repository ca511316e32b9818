"""The user's workspace, `$MOLTBOT_HOME` (default `~/ai-gateway`): where everything they own lives.

First start creates it with working examples and a README of its own (the examples' README
speaks of the repository, not of this folder); an existing workspace is never overwritten, only
completed (a missing folder or file is made, an existing one is kept as the user wrote it).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

DEFAULT_HOME = "~/ai-gateway"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def skills(self) -> Path:
        return self.root / "skills"

    @property
    def knowledge(self) -> Path:
        return self.root / "knowledge"

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.data / "logs"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.data / 'moltbot.db'}"

    def pid_path(self, port: int) -> Path:
        """One pid file per port, so `gateway stop --port N` finds the right process."""
        return self.data / f"gateway-{port}.pid"

    def loop_report_path(self, port: int) -> Path:
        """Where the gateway on `port` records each time its event loop was blocked."""
        return self.data / f"gateway-{port}.blocked"


def default_workspace() -> Workspace:
    return Workspace(Path(os.environ.get("MOLTBOT_HOME", DEFAULT_HOME)).expanduser().resolve())


def find_examples() -> Path | None:
    """The example skills/knowledge: inside the installed wheel, or the source checkout."""
    bundled = Path(str(resources.files("gateway"))) / "examples"
    if bundled.is_dir():
        return bundled
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "skills").is_dir() else None


def ensure_workspace(ws: Workspace) -> list[str]:
    """Create what is missing; returns what was created, for the start-up message."""
    created: list[str] = []
    ws.root.mkdir(parents=True, exist_ok=True)
    examples = find_examples()
    for name in ("skills", "knowledge"):
        target = ws.root / name
        if target.exists():
            continue
        source = examples / name if examples else None
        if source and source.is_dir():
            shutil.copytree(source, target,
                            ignore=shutil.ignore_patterns("__pycache__", "README.md"))
        else:
            target.mkdir()
        created.append(f"{name}/")
    for name, template in (("config.yaml", "config_template.yaml"),
                           ("README.md", "workspace_readme.md")):
        if not (ws.root / name).exists():
            text = resources.files("gateway").joinpath(template).read_text(encoding="utf-8")
            (ws.root / name).write_text(text, encoding="utf-8")
            created.append(name)
    ws.logs.mkdir(parents=True, exist_ok=True)
    return created
