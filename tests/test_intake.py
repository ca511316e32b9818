"""The one intake, without any transport: a payload becomes a Message or the Reply refusing
it, a bad payload meets the guard chain first, and a refused message leaves no file behind.
A real pipeline (real guard chain, store, sessions) answers; no model is needed."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.common.workspace import Workspace
from gateway.config import parse_config
from gateway.core.chat import ChatResponder
from gateway.core.execute import Executor
from gateway.core.inbox import Inbox
from gateway.core.intake import Arrival, Intake
from gateway.core.message import Message, Reply
from gateway.core.pipeline import Pipeline
from gateway.core.sessions import SessionManager
from gateway.core.settings import Process
from gateway.core.store import Store
from gateway.server.app import settings_for

TOKEN = "t" * 32


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[Intake]:
    workspace = Workspace(tmp_path / "ws")
    workspace.root.mkdir()
    store = Store(workspace.db_url)
    config = parse_config({"auth": {"tokens": [TOKEN]},
                           "gateway": {"max_file_bytes": 1024, "max_upload_bytes": 2048}})
    settings = settings_for(config, Process(workspace, store))
    sessions = SessionManager(store)
    pipeline = Pipeline(store=store, settings=settings, executor=Executor(
        sessions, ChatResponder(sessions, None, workspace.root), workspace.root))
    yield Intake(pipeline, Inbox(workspace.root), store)
    store.close()


def inbox_files(intake: Intake) -> list[Path]:
    return [p for p in (intake.inbox.workspace / "files").rglob("*") if p.is_file()]


def arrival(payload: Any, credential: str | None = TOKEN, **fields: Any) -> Arrival:
    return Arrival("websocket", payload, credential=credential, peer="127.0.0.1",
                   takes_files=True, **fields)


def a_file(data: bytes = b"# hello\n", name: str = "notes.md") -> dict[str, str]:
    return {"name": name, "media_type": "text/markdown",
            "data": base64.b64encode(data).decode()}


@pytest.mark.parametrize("payload", [
    None, [], {"text": ""}, {"text": 5}, {"text": "hi", "chat": {"no": 1}},
    {"text": "hi", "files": "notes.md"}, {"text": "hi", "files": [{"name": "a.md"}]},
    {"text": "hi", "files": [{"name": "a.md", "data": "%%%"}]},
    {"text": "hi", "files": [a_file(b"x" * 1025)]},
])
def test_a_stranger_with_a_bad_payload_learns_only_that_it_is_a_stranger(
        intake: Intake, payload: Any) -> None:
    refused = intake.take(arrival(payload, credential=None))
    assert refused.error == "unauthorized" and "dashboard --token-gen" in refused.text
    told = intake.take(arrival(payload))
    assert told.error in ("bad_request", "payload_too_large")
    assert refused.msg_id == told.msg_id == ""  # nothing was stored
    assert inbox_files(intake) == []


def test_the_transports_own_problem_meets_the_chain_first_too(intake: Intake) -> None:
    too_big = {"problem": "The request body is larger than 1 byte.",
               "problem_code": "payload_too_large"}
    assert intake.take(arrival({}, credential="wrong", **too_big)).error == "unauthorized"
    assert intake.take(arrival({}, **too_big)).error == "payload_too_large"


def test_a_message_may_be_only_a_file_and_its_files_are_stored_with_it(
        intake: Intake) -> None:
    found = intake.message(arrival({"files": [a_file()], "id": 7}))
    assert isinstance(found, Message)
    assert found.text == "" and found.client_id == "7"
    (sent,) = found.files
    assert sent.name == "notes.md" and sent.size == 8
    assert (intake.inbox.workspace / sent.path).read_bytes() == b"# hello\n"
    reply = intake.entry.handle(found, TOKEN)
    intake.settle(found)
    assert reply.msg_id == found.id  # answered (the model is not there: an error reply)
    assert intake.store.files_of(found.id, "in") == found.files
    assert (intake.inbox.workspace / sent.path).exists()


def test_files_of_a_message_the_pipeline_refused_are_removed(intake: Intake) -> None:
    intake.entry.draining = True  # type: ignore[attr-defined]  # refuses before the store
    reply = intake.take(arrival({"text": "hi", "files": [a_file()]}))
    assert reply.error == "shutting_down"
    assert inbox_files(intake) == []


def test_a_channel_that_takes_no_files_says_so(intake: Intake) -> None:
    reply = intake.take(Arrival("enterprise_im", {"text": "hi", "sender": "ada",
                                                  "files": [a_file()]},
                                credential=TOKEN, peer="127.0.0.1", needs_sender=True))
    assert isinstance(reply, Reply) and reply.error == "bad_request"
    assert "does not take files" in reply.text
    no_sender = intake.take(Arrival("enterprise_im", {"text": "hi"}, credential=TOKEN,
                                    peer="127.0.0.1", needs_sender=True))
    assert no_sender.error == "bad_request" and '"sender" is required' in no_sender.text
