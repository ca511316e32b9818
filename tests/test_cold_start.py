"""The gateway's start in two halves (`gateway/server/starting.py`): the port answers /healthz
first; the skills, the knowledge and memory indexes and the channels follow, and every other
request waits for them. A question asked in between is answered as it would be a minute later:
grounded in the knowledge, routed to the skills.

The `hold-start=PATH` test fault keeps the slow half from running until the test creates PATH,
so the question provably arrives before the index exists (no timing involved)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import httpx
import pytest
from flask import Flask

from gateway.server.starting import Starting
from tests.conftest import GatewayProcess, free_port, model_config, write_config
from tests.fakes.fake_model import FakeModelServer

TOKEN = "static-token-for-the-cold-start-tests"
FAQ = """# Help

## How do I reset the blue widget?
Hold its reset pin for ten seconds until the light blinks twice.
"""
PING = '''from moltbot_sdk import Skill, context


class Ping(Skill):
    @context.handle(intent="ping", description="answers pong")
    def ping(self, msg):
        return "pong"
'''
QUESTION = "How do I reset the blue widget?"
WAITING = "requests wait for the start to finish"


def wait_for(found: Callable[[], bool], what: str, deadline_s: float = 30.0) -> None:
    until = time.monotonic() + deadline_s
    while not found():
        assert time.monotonic() < until, f"not within {deadline_s:.0f}s: {what}"
        time.sleep(0.05)


@pytest.fixture
def held(home: Path, fake_model: FakeModelServer,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GatewayProcess, Path]]:
    """A gateway whose port answers and whose slow half of the start waits for a file."""
    for path, text in (("knowledge/faq.md", FAQ), ("skills/ping.py", PING)):
        (home / path).parent.mkdir(parents=True, exist_ok=True)
        (home / path).write_text(text, encoding="utf-8")
    write_config(home, {**model_config(fake_model.url), "auth": {"tokens": [TOKEN]}})
    release = home / "release-the-start"
    monkeypatch.setenv("MOLTBOT_TEST_FAULTS", f"hold-start={release}")
    gw = GatewayProcess(home, free_port())
    gw.token = TOKEN
    gw.start()  # returns at the first /healthz 200
    yield gw, release
    gw.stop()


def test_a_question_asked_while_the_gateway_starts_is_grounded_in_knowledge(
        held: tuple[GatewayProcess, Path], fake_model: FakeModelServer) -> None:
    gw, release = held
    replies: dict[str, httpx.Response] = {}

    def ask(text: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: replies.__setitem__(text, gw.post(text)))
        thread.start()
        return thread

    asking = [ask(QUESTION)]
    wait_for(lambda: WAITING in gw.log(), "the question waiting at the gate")
    assert "knowledge loaded" not in gw.log()  # the index does not exist yet
    assert httpx.get(f"{gw.url}/healthz", timeout=5).status_code == 200  # liveness meanwhile
    asking.append(ask("/ping"))
    release.touch()
    for thread in asking:
        thread.join(60)
    answer = replies[QUESTION]
    assert answer.status_code == 200, answer.text
    assert answer.json()["reply"].endswith(
        "Sources: knowledge/faq.md (Help > How do I reset the blue widget?)")
    sent = [m["content"] for r in fake_model.requests for m in r["body"].get("messages", [])
            if m["role"] == "system"]
    assert any("Hold its reset pin for ten seconds" in m for m in sent)  # the model saw it
    assert replies["/ping"].json()["reply"] == "pong"  # routed to the skill, not the model
    assert "started: skills, knowledge and channels ready" in gw.log()


def gated(starting: Starting) -> Any:
    app = Flask(__name__)
    app.before_request(starting.gate)
    app.add_url_rule("/healthz", "healthz", lambda: "ok")
    app.add_url_rule("/work", "work", lambda: "done")
    return app.test_client()


def test_a_start_that_fails_turns_the_waiting_requests_away_and_stops() -> None:
    starting, stopped = Starting(), threading.Event()

    def broken() -> None:
        raise RuntimeError("the skill hosts could not start")

    starting.run(broken, started=lambda: None, failed=stopped.set)
    client = gated(starting)
    assert client.get("/healthz").status_code == 200
    refused = client.get("/work")  # waits for the start, which fails
    assert refused.status_code == 503
    assert "failed to start" in refused.json["error"]["message"]
    assert starting.failed and stopped.is_set()


def test_a_stop_during_a_start_that_hangs_cuts_it_short() -> None:
    starting, went_on = Starting(), threading.Event()

    def hangs() -> None:
        gevent.sleep(60)
        went_on.set()

    starting.run(hangs, started=lambda: None, failed=lambda: None)
    gevent.sleep(0)  # the start is under way
    starting.stop(grace=0.1)
    refused = gated(starting).get("/work")
    assert refused.status_code == 503 and refused.json["error"]["code"] == "shutting_down"
    assert not starting.failed and not went_on.is_set()
