"""Skill loading without a gateway: the hosts, last-good versions, clashes, routing order."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core.router import route
from gateway.skills.catalog import SkillLoader, SkillSet
from gateway.skills.errors import SkillError
from gateway.skills.hostpool import SkillHostPool
from moltbot_sdk import context

SKILL = '''\
from moltbot_sdk import Skill, context

class Echo(Skill):
    @context.handle(intent="echo", keywords=["say back"], description="Echoes")
    def echo(self, msg):
        return {{"reply": "{prefix}" + msg["text"]}}

    @context.handle(intent="slow", command="/zz")
    def slow(self, msg):
        import time
        time.sleep(30)
'''

SCRIPT = ("#!/bin/sh\n# moltbot: intent=shout\n# moltbot: keywords=shout it, say\n"
          "cat >/dev/null\necho LOUD\n")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "skills").mkdir()
    return tmp_path


@pytest.fixture
def loader(workspace: Path) -> Iterator[SkillLoader]:
    hosts = SkillHostPool(workspace, 1, {})
    yield SkillLoader(workspace, hosts, default_timeout=1.0)
    hosts.close()


def write_script(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o755)


def test_python_and_script_skills_load_and_answer(workspace: Path,
                                                  loader: SkillLoader) -> None:
    (workspace / "skills" / "echo.py").write_text(SKILL.format(prefix="> "), encoding="utf-8")
    write_script(workspace / "skills" / "shout.sh", SCRIPT)
    skills = loader.build(SkillSet())
    assert skills.errors == {}
    assert sorted(h.intent for h in skills.handlers) == ["echo", "shout", "slow"]
    echo = skills.by_command("echo")
    assert echo is not None and echo.call({"text": "hi"}).text == "> hi"
    shout = skills.by_command("shout")
    assert shout is not None and shout.call({"text": "x"}).text == "LOUD"


def test_a_broken_file_keeps_its_last_good_version(workspace: Path,
                                                   loader: SkillLoader) -> None:
    path = workspace / "skills" / "echo.py"
    path.write_text(SKILL.format(prefix="v1 "), encoding="utf-8")
    first = loader.build(SkillSet())
    path.write_text("def broken(:\n", encoding="utf-8")
    second = loader.build(first)
    assert "syntax error on line 1" in second.errors["skills/echo.py"]
    assert "previous version keeps running" in second.errors["skills/echo.py"]
    handler = second.by_command("echo")
    assert handler is not None and handler.call({"text": "x"}).text == "v1 x"

    path.write_text("raise RuntimeError('boom at import')\n", encoding="utf-8")
    assert "RuntimeError: boom at import" in loader.build(first).errors["skills/echo.py"]


def test_a_fresh_file_that_fails_is_reported_not_loaded(workspace: Path,
                                                        loader: SkillLoader) -> None:
    (workspace / "skills" / "nohandler.py").write_text("x = 1\n", encoding="utf-8")
    (workspace / "skills" / "notes.txt").write_text("hello", encoding="utf-8")
    write_script(workspace / "skills" / "noshebang.sh", "echo hi\n")
    skills = loader.build(SkillSet())
    assert skills.handlers == ()
    assert "no handler found" in skills.errors["skills/nohandler.py"]
    assert "not a skill" in skills.errors["skills/notes.txt"]
    assert "shebang" in skills.errors["skills/noshebang.sh"]


def test_a_script_that_breaks_keeps_running_its_last_good_copy(workspace: Path,
                                                                loader: SkillLoader) -> None:
    path = workspace / "skills" / "shout.sh"
    write_script(path, SCRIPT)
    first = loader.build(SkillSet())
    path.write_text("no shebang now\n", encoding="utf-8")
    second = loader.build(first)
    assert "previous version keeps running" in second.errors["skills/shout.sh"]
    handler = second.by_command("shout")
    assert handler is not None and handler.call({"text": ""}).text == "LOUD"


def test_command_clashes_are_reported(workspace: Path, loader: SkillLoader) -> None:
    (workspace / "skills" / "a.py").write_text(SKILL.format(prefix="a"), encoding="utf-8")
    (workspace / "skills" / "b.py").write_text(SKILL.format(prefix="b"), encoding="utf-8")
    skills = loader.build(SkillSet())
    assert "/echo is already used by skills/a.py" in skills.errors["skills/b.py"]
    handler = skills.by_command("echo")
    assert handler is not None and handler.source == "skills/a.py"


def test_a_hanging_handler_is_stopped_and_its_worker_replaced(workspace: Path,
                                                              loader: SkillLoader) -> None:
    (workspace / "skills" / "echo.py").write_text(SKILL.format(prefix=""), encoding="utf-8")
    skills = loader.build(SkillSet())
    slow = skills.by_command("zz")
    assert slow is not None
    with pytest.raises(SkillError, match="took longer than 1s and was stopped"):
        slow.call({"text": ""})
    echo = skills.by_command("echo")
    assert echo is not None and echo.call({"text": "back"}).text == "back"


def test_routing_order_command_then_keyword_then_chat(workspace: Path,
                                                      loader: SkillLoader) -> None:
    (workspace / "skills" / "echo.py").write_text(SKILL.format(prefix=""), encoding="utf-8")
    write_script(workspace / "skills" / "shout.sh", SCRIPT)
    skills = loader.build(SkillSet())
    explicit = route("/echo please say back", skills)
    assert (explicit.kind, explicit.name, explicit.args) == ("skill", "echo", "please say back")
    assert route("/zz", skills).name == "slow"
    longest = route("could you say back this", skills)  # "say back" beats "say"
    assert (longest.name, longest.reason) == ("echo", "keyword 'say back'")
    assert route("just say it", skills).name == "shout"
    assert route("/reset", skills).kind == "command"
    assert route("nothing matches", skills).kind == "chat"


def test_handle_rejects_bad_names() -> None:
    with pytest.raises(ValueError, match="intent must be a word"):
        context.handle(intent="two words")
    with pytest.raises(ValueError, match="command must look like"):
        context.handle(intent="ok", command="/no spaces")


def test_context_tools_outside_a_running_skill_say_why() -> None:
    with pytest.raises(RuntimeError, match="only inside a skill"):
        context.tool("files", action="list")


def test_a_host_busy_during_a_reload_loads_before_its_next_call(workspace: Path) -> None:
    hosts = SkillHostPool(workspace, 2, {})
    try:
        loader = SkillLoader(workspace, hosts, default_timeout=5.0)
        (workspace / "skills" / "nap.py").write_text(
            "import time\nfrom moltbot_sdk import context\n"
            "@context.handle(intent='nap')\ndef nap(msg):\n"
            "    time.sleep(float(msg['text']))\n    return 'rested'\n", encoding="utf-8")
        first = loader.build(SkillSet())
        nap = first.by_command("nap")
        assert nap is not None
        napping = threading.Thread(target=nap.call, args=({"text": "1.5"},))
        napping.start()  # one host is busy while the skills change
        (workspace / "skills" / "echo.py").write_text(SKILL.format(prefix="new "),
                                                      encoding="utf-8")
        second = loader.build(first)
        napping.join(10)
        echo = second.by_command("echo")
        assert echo is not None
        assert [echo.call({"text": str(i)}).text for i in range(4)] == \
            ["new 0", "new 1", "new 2", "new 3"]
    finally:
        hosts.close()
