"""The pipeline's contract, with a real store, real sessions and a real model pool pointed at
the fake model server: every message answers, refusals store nothing, failures keep the msg_id,
retries never call the model twice."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.common.workspace import Workspace
from gateway.config import parse_config
from gateway.core.builtins import Builtins, Command, CommandError
from gateway.core.chat import ChatResponder
from gateway.core.execute import Executor
from gateway.core.message import Message
from gateway.core.pipeline import Pipeline
from gateway.core.sessions import SessionManager
from gateway.core.settings import Process
from gateway.core.store import Store
from gateway.server.app import settings_for
from gateway.skills.catalog import SkillSet
from gateway.skills.errors import SkillError
from gateway.skills.handlers import SkillHandler, SkillResult
from gateway.tools.base import Tool
from moltbot_sdk.skill import HandlerSpec
from tests.conftest import model_config
from tests.fakes.fake_model import FakeModelServer

TOKEN = "t" * 32


@pytest.fixture
def process(tmp_path: Path) -> Iterator[Process]:
    workspace = Workspace(tmp_path / "ws")
    store = Store(workspace.db_url)
    built = Process(workspace, store)
    yield built
    for pipeline in PIPELINES.pop(id(built), []):
        for pool in pipeline.settings.models.values():
            pool.close()
    store.close()


PIPELINES: dict[int, list[Pipeline]] = {}


def make_pipeline(process: Process, config: dict[str, Any]) -> Pipeline:
    settings = settings_for(parse_config({"auth": {"tokens": [TOKEN]}, **config}), process)
    sessions = SessionManager(process.store)
    pipeline = Pipeline(store=process.store, settings=settings,
                        executor=Executor(sessions, ChatResponder(sessions, None)))
    PIPELINES.setdefault(id(process), []).append(pipeline)  # its pools close after the test
    return pipeline


def message(text: str, **fields: Any) -> Message:
    return Message(**{"channel": "http", "sender": "ada", "chat": "c", "text": text,
                      "peer": "127.0.0.1", **fields})


def test_a_message_is_stored_then_answered_with_every_step_traced(
        process: Process, fake_model: FakeModelServer) -> None:
    pipeline = make_pipeline(process, model_config(fake_model.url))
    reply = pipeline.handle(message("hello"), TOKEN)
    assert (reply.error, reply.text) == (None, "echo: hello")
    stored = process.store.get_message(reply.msg_id)
    assert stored is not None and (stored.status, stored.route) == ("answered", "chat:model")
    steps = [s.step for s in process.store.get_trace(reply.msg_id)]
    assert steps[:5] == ["guard", "store", "queue", "session", "route"]
    assert "model" in steps
    guard = process.store.get_trace(reply.msg_id)[0]
    assert guard.detail == "address,rate_limit,authentication,shared_limit,stranger: token:config"


def test_a_refused_message_is_answered_with_a_code_and_never_stored(
        process: Process, fake_model: FakeModelServer) -> None:
    pipeline = make_pipeline(process, model_config(fake_model.url))
    for credential in (None, "wrong-token"):
        reply = pipeline.handle(message("let me in"), credential)
        assert reply.error == "unauthorized" and "dashboard --token-gen" in reply.text
        assert process.store.get_message(reply.msg_id) is None
    assert fake_model.calls == 0


def test_a_message_without_sender_or_chat_is_the_principals_own(
        process: Process, fake_model: FakeModelServer) -> None:
    pipeline = make_pipeline(process, model_config(fake_model.url))
    reply = pipeline.handle(message("hi", sender="", chat=""), TOKEN)
    stored = process.store.get_message(reply.msg_id)
    assert stored is not None and (stored.sender, stored.chat) == ("token:config",
                                                                   "token:config")


def test_a_store_that_fails_still_gives_the_sender_an_answer_with_the_msg_id(
        process: Process, fake_model: FakeModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = make_pipeline(process, model_config(fake_model.url))

    def broken(*args: Any) -> None:
        raise OSError("disk I/O error at /secret/path")

    monkeypatch.setattr(process.store, "add_message", broken)
    msg = message("hello")
    reply = pipeline.handle(msg, TOKEN)
    assert reply.error == "internal_error" and reply.msg_id == msg.id
    assert msg.id in reply.text and "/secret/path" not in reply.text


def test_a_failure_after_storing_marks_the_message_failed_and_answers(
        process: Process, fake_model: FakeModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = make_pipeline(process, model_config(fake_model.url))

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug with a password=hunter2 in it")

    monkeypatch.setattr(pipeline.executor, "run", broken)
    reply = pipeline.handle(message("hello"), TOKEN)
    assert reply.error == "internal_error" and "hunter2" not in reply.text
    stored = process.store.get_message(reply.msg_id)
    assert stored is not None and (stored.status, stored.route) == ("failed", "error")


def test_a_retry_gets_the_first_answer_and_the_model_is_called_once(
        process: Process, fake_model: FakeModelServer) -> None:
    pipeline = make_pipeline(process, model_config(fake_model.url))
    fake_model.delay_first = 0.3
    replies: list[Any] = []
    threads = [threading.Thread(target=lambda: replies.append(
        pipeline.handle(message("once", client_id="k1"), TOKEN))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    again = pipeline.handle(message("once", client_id="k1"), TOKEN)  # after: from the store
    assert {r.msg_id for r in [*replies, again]} == {replies[0].msg_id}
    assert {r.text for r in [*replies, again]} == {"echo: once"}
    assert fake_model.calls == 1


def test_draining_refuses_new_messages_with_a_time_to_retry(
        process: Process, fake_model: FakeModelServer) -> None:
    pipeline = make_pipeline(process, model_config(fake_model.url))
    assert pipeline.drain(1)
    reply = pipeline.handle(message("late"), TOKEN)
    assert (reply.error, reply.retry_after) == ("shutting_down", 5.0)


def test_no_model_configured_is_a_clear_error(process: Process) -> None:
    pipeline = make_pipeline(process, {})
    reply = pipeline.handle(message("anyone?"), TOKEN)
    assert reply.error == "model_unavailable" and "models:" in reply.text


def test_the_rate_limit_answers_with_retry_after_and_spares_loopback(
        process: Process, fake_model: FakeModelServer) -> None:
    pipeline = make_pipeline(process, {**model_config(fake_model.url),
                                       "auth": {"tokens": [TOKEN],
                                                "rate_limit": {"per_ip": "2/min"}}})
    far = [pipeline.handle(message(f"m{i}", peer="198.51.100.7"), TOKEN) for i in range(3)]
    assert [r.error for r in far] == [None, None, "rate_limited"]
    assert far[2].retry_after is not None and 1 <= far[2].retry_after <= 60
    assert "auth.rate_limit" in far[2].text
    near = [pipeline.handle(message(f"n{i}"), TOKEN) for i in range(5)]
    assert all(r.error is None for r in near)  # 127.0.0.1 is exempt by default


def test_an_unknown_command_lists_the_commands_without_calling_the_model(
        process: Process, fake_model: FakeModelServer) -> None:
    pipeline = make_pipeline(process, model_config(fake_model.url))
    reply = pipeline.handle(message("/boom"), TOKEN)
    assert reply.text.startswith("There is no command /boom.") and "/reset" in reply.text
    assert fake_model.calls == 0
    stored = process.store.get_message(reply.msg_id)
    assert stored is not None and stored.route == "command:unknown"


def weather_skills(calls: list[dict[str, Any]]) -> SkillSet:
    def call(msg: dict[str, Any]) -> SkillResult:
        calls.append(msg)
        if "fail" in msg["text"]:
            raise SkillError("skill weather failed with exit code 1",
                             "Traceback: /home/owner/.ssh/id_rsa unreadable")
        return SkillResult(f"sunny in {msg['text']}")

    spec = HandlerSpec("weather", ("forecast",), "/weather", "the weather for a place")
    return SkillSet(handlers=(SkillHandler(spec, "skills/weather.py", "python", call),))


def test_a_skill_the_model_chooses_runs_in_the_one_executor_and_is_recorded_as_that_skill(
        process: Process, fake_model: FakeModelServer) -> None:
    pipeline = make_pipeline(process, model_config(fake_model.url))
    calls: list[dict[str, Any]] = []
    pipeline.use_skills(weather_skills(calls))
    fake_model.tool_call_when(contains="umbrella", name="weather", arguments={"text": "Oslo"})
    reply = pipeline.handle(message("do I need an umbrella?"), TOKEN)
    assert reply.text == "sunny in Oslo" and calls[0]["text"] == "Oslo"
    stored = process.store.get_message(reply.msg_id)
    assert stored is not None and stored.route == "skill:weather"
    routes = [s.detail for s in process.store.get_trace(reply.msg_id) if s.step == "route"]
    assert routes == ["chat:model (no command or keyword matched: plain chat)",
                      "skill:weather (chosen by the model)"]


def test_a_failing_skill_tells_the_sender_little_and_the_trace_much(
        process: Process, fake_model: FakeModelServer) -> None:
    pipeline = make_pipeline(process, model_config(fake_model.url))
    pipeline.use_skills(weather_skills([]))
    reply = pipeline.handle(message("/weather fail"), TOKEN)
    assert reply.error == "skill_error"
    assert reply.text == f"skill weather failed with exit code 1 (msg_id {reply.msg_id})."
    skill = next(s for s in process.store.get_trace(reply.msg_id) if s.step == "skill")
    assert skill.outcome == "error" and "id_rsa unreadable" in skill.detail


class Noted(Tool):
    """A tool made for one sender, as the memory and reminder tools are."""

    def __init__(self, sender: str) -> None:
        self.name, self.description, self.sender = "note", "note something", sender
        self.parameters = {"type": "object", "properties": {"text": {"type": "string"}}}

    def call(self, arguments: dict[str, Any]) -> str:
        return f"noted for {self.sender}: {arguments.get('text')}"


def test_the_gateways_own_commands_and_tools_reach_the_router_the_help_and_the_model(
        process: Process, fake_model: FakeModelServer) -> None:
    pipeline = make_pipeline(process, model_config(fake_model.url))

    def remember(msg: Message, args: str, settings: Any) -> str:
        if not args:
            raise CommandError("Say what to remember: /remember <fact>")
        return f"{msg.sender} said {args}"

    pipeline.use_builtins(Builtins.of(
        [Command("remember", "keep a fact", remember)],
        [lambda msg, settings: {} if msg.sender == "stranger" else {"note": Noted(msg.sender)}]))
    assert pipeline.handle(message("/Remember tea"), TOKEN).text == "ada said tea"
    assert pipeline.handle(message("/remember"), TOKEN).text == \
        "Say what to remember: /remember <fact>"
    assert "/remember - keep a fact" in pipeline.handle(message("/help"), TOKEN).text
    fake_model.tool_call_when(contains="jot", name="note", arguments={"text": "milk"})
    assert pipeline.handle(message("jot milk"), TOKEN).text == "tool said: noted for ada: milk"
    # a sender the maker gives no tool to: the model is not offered it, so it never calls it
    assert pipeline.handle(message("jot milk", sender="stranger"), TOKEN).text == \
        "echo: jot milk"
