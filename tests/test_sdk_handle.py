"""`@context.handle` as a newcomer writes it: intent optional, mistakes named with their line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core.router import route
from gateway.skills.catalog import SkillLoader, SkillSet
from gateway.skills.hostpool import SkillHostPool
from moltbot_sdk import context
from moltbot_sdk.skill import ATTRIBUTE, HandlerDefinitionError

NO_INTENT = '''\
from moltbot_sdk import Skill, context

class Boom(Skill):
    @context.handle(command="/boom")
    def explode(self, msg):
        return {"reply": "boom " + msg["text"]}

    @context.handle(keywords=["fizz buzz"])
    def fizz(self, msg):
        return "fizzed"

@context.handle
def bare(msg):
    return "bare"
'''


@pytest.fixture
def loader(tmp_path: Path) -> Iterator[SkillLoader]:
    (tmp_path / "skills").mkdir()
    hosts = SkillHostPool(tmp_path, 1, {})
    yield SkillLoader(tmp_path, hosts, default_timeout=5.0)
    hosts.close()


def write_skill(loader: SkillLoader, name: str, text: str) -> None:
    (loader.workspace / "skills" / name).write_text(text, encoding="utf-8")


def test_a_handler_without_intent_loads_and_answers(loader: SkillLoader) -> None:
    write_skill(loader, "boom.py", NO_INTENT)
    skills = loader.build(SkillSet())
    assert skills.errors == {}
    assert sorted(h.intent for h in skills.handlers) == ["bare", "boom", "fizz"]
    boom = route("/boom now", skills)
    assert (boom.kind, boom.name) == ("skill", "boom")
    handler = skills.by_command("boom")
    assert handler is not None and handler.call({"text": "now"}).text == "boom now"
    assert route("play fizz buzz", skills).name == "fizz"
    bare = skills.by_command("bare")
    assert bare is not None and bare.call({"text": ""}).text == "bare"


@pytest.mark.parametrize(("decorator", "expected"), [
    ('@context.handle(intnet="x")', "unknown argument(s) intnet; it takes intent, keywords"),
    ('@context.handle(keywords="faq")', "keywords must be a list of strings"),
    ('@context.handle(keywords=5)', "keywords must be a list of strings"),
    ('@context.handle(intent="two words")', "intent must be a word like 'faq_query'"),
    ('@context.handle(command="/no spaces")', "command must look like '/faq'"),
    ('@context.handle(timeout=0)', "timeout must be seconds above 0"),
])
def test_a_bad_decorator_argument_names_the_fix_and_the_line(
        loader: SkillLoader, decorator: str, expected: str) -> None:
    write_skill(loader, "bad.py", f"from moltbot_sdk import context\n\n{decorator}\n"
                                  "def handler(msg):\n    return 'x'\n")
    problem = loader.build(SkillSet()).errors["skills/bad.py"]
    assert "HandlerDefinitionError" in problem and expected in problem
    assert problem.endswith("(line 3)"), problem  # the decorator's line in the skill's file


def test_a_function_name_that_cannot_be_an_intent_asks_for_one() -> None:
    def 回答(msg: dict) -> str:
        return ""

    with pytest.raises(HandlerDefinitionError, match=r"give one: @context\.handle"):
        context.handle()(回答)


def test_explicit_intent_still_wins() -> None:
    def handler(msg: dict) -> str:
        return ""

    spec = getattr(context.handle("faq_query", command="/faq")(handler), ATTRIBUTE)
    assert (spec.intent, spec.commands()) == ("faq_query", ("faq", "faq_query"))
