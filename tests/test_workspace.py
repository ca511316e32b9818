"""A new workspace explains itself: its own README, whose skill example loads and answers."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.common.workspace import Workspace, ensure_workspace
from gateway.core.router import route
from gateway.skills.catalog import SkillLoader, SkillSet
from gateway.skills.hostpool import SkillHostPool


def test_the_workspace_gets_its_own_readme_not_the_repository_one(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ai-gateway")
    created = ensure_workspace(ws)
    assert "README.md" in created
    readme = (ws.root / "README.md").read_text(encoding="utf-8")
    for folder in ("`config.yaml`", "`skills/`", "`knowledge/`", "`data/`"):
        assert f"| {folder} |" in readme
    assert "copied into a new workspace" not in readme
    assert not (ws.skills / "README.md").exists()  # the examples' README speaks of the repo
    assert (ws.skills / "auto_reply.py").exists()


def test_an_edited_readme_is_kept(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ai-gateway")
    ws.root.mkdir()
    (ws.root / "README.md").write_text("my notes\n", encoding="utf-8")
    assert "README.md" not in ensure_workspace(ws)
    assert (ws.root / "README.md").read_text(encoding="utf-8") == "my notes\n"


def test_the_readme_skill_example_works_as_written(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ai-gateway")
    ensure_workspace(ws)
    readme = (ws.root / "README.md").read_text(encoding="utf-8")
    example = re.search(r"```python\n(.*?)```", readme, re.DOTALL)
    assert example is not None
    (ws.skills / "hello.py").write_text(example.group(1), encoding="utf-8")
    hosts = SkillHostPool(ws.root, 1, {})
    try:
        skills = SkillLoader(ws.root, hosts, default_timeout=5.0).build(SkillSet())
        assert "skills/hello.py" not in skills.errors, skills.errors
        routed = route("/hello Ada", skills)
        assert (routed.kind, routed.name) == ("skill", "hello")
        assert route("please say hello", skills).name == "hello"
        handler = skills.by_command("hello")
        assert handler is not None
        assert handler.call({"text": "Ada", "sender": "me"}).text == "Hello, Ada!"
        assert handler.call({"text": "", "sender": "Bob"}).text == "Hello, Bob!"
    finally:
        hosts.close()
