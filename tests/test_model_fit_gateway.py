"""Fitting the model through the real gateway: each model's card read from the fake Ollama's
/api/show, the context and the tools sized to it, `num_ctx` sent to match, the trace and
`moltbot doctor` saying what was cut and why."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.config import parse_config
from gateway.ops.doctor import check_fit
from tests.conftest import GatewayProcess, free_port, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer
from tests.test_openai_entry import GREETER, WEATHER

BUDGET = 16000  # gateway.context_tokens: far more than the 4k model takes


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """The tests of this module share one gateway (one start instead of seven), so its
    skill hosts outlive each test; `gw` stops it after the last, and waits for it."""
    yield


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeModelServer, FakeModelServer]]:
    """The fake Ollama with two small models, and one whose /api/show fails."""
    fake, old = FakeModelServer().start(), FakeModelServer().start()
    fake.card("tiny:1b", context_length=4096)
    fake.card("plain:2b", context_length=8192, tools=False)
    old.show_status = 500
    fake.known_models, old.known_models = {"big", "tiny:1b", "plain:2b"}, {"olden"}
    yield fake, old
    fake.stop()
    old.stop()


@pytest.fixture(scope="module")
def config(servers: tuple[FakeModelServer, FakeModelServer]) -> dict[str, Any]:
    fake, old = servers
    return {"gateway": {"context_tokens": BUDGET},
            "models": {"big": {"endpoint": fake.url, "max_tokens": 64},
                       "tiny": {"endpoint": fake.url, "model": "tiny:1b", "max_tokens": 512},
                       "plain": {"endpoint": fake.url, "model": "plain:2b", "max_tokens": 64},
                       "olden": {"endpoint": old.url, "max_tokens": 64}}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory,
       config: dict[str, Any]) -> Iterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("fit") / "ai-gateway"
    (home / "skills").mkdir(parents=True)
    (home / "skills" / "greeter.py").write_text(GREETER, encoding="utf-8")
    write_config(home, config)
    proc = GatewayProcess(home, free_port()).start()
    yield proc
    assert proc.stop() == 0


def ask(gw: GatewayProcess, model: str, messages: list[dict[str, Any]],
        **extra: Any) -> tuple[str, str]:
    """The reply and the trace's context and model spans of one OpenAI-entry request."""
    with openai.OpenAI(base_url=f"{gw.url}/v1", api_key=gw.token, max_retries=0,
                       timeout=30) as client:
        done = client.chat.completions.create(model=model, messages=messages,  # type: ignore
                                              **extra)
    msg_id = done.id.removeprefix("chatcmpl-")
    trace = httpx.get(f"{gw.url}/api/v1/messages/{msg_id}/trace", headers=gw.headers,
                      timeout=10).json()
    spans = {s["step"]: s["detail"] for s in trace["spans"]}
    return done.choices[0].message.content or "", f"{spans['context']} | {spans['model']}"


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def test_a_4k_model_gets_a_trimmed_context_and_num_ctx_4096(
        gw: GatewayProcess, servers: tuple[FakeModelServer, FakeModelServer]) -> None:
    fake, _ = servers
    turn = "a long sentence about the garden and the weather " * 10  # ~125 tokens
    history = [m for i in range(30) for m in
               (user(f"{i} {turn}"), {"role": "assistant", "content": f"{i} {turn}"})]
    reply, spans = ask(gw, "tiny", [*history, user("and now?")])
    assert reply == "echo: and now?"
    assert fake.num_ctx[-1] == 4096
    sent = fake.requests[-1]["body"]["messages"]
    assert 2 < len(sent) < len(history)  # the newest turns, within the model's window
    assert sum(len(str(m["content"])) for m in sent) // 4 <= 3185
    assert "context 4096 (tiny:1b, from /api/show), num_ctx 4096" in spans
    assert (f"context cut to 3185 tokens: gateway.context_tokens is {BUDGET} but tiny:1b "
            "takes 4096") in spans
    assert "tools: " in spans and "greet" in spans and "not offered for room" not in spans


def test_each_model_card_is_read_once(
        gw: GatewayProcess, servers: tuple[FakeModelServer, FakeModelServer]) -> None:
    fake, _ = servers
    ask(gw, "tiny", [user("one")])
    ask(gw, "tiny", [user("two")])
    assert fake.shows.count("tiny:1b") == 1


def test_a_big_model_is_sent_the_num_ctx_of_the_budget_not_its_own_length(
        gw: GatewayProcess, servers: tuple[FakeModelServer, FakeModelServer]) -> None:
    fake, _ = servers
    _, spans = ask(gw, "big", [user("hello")])
    # the budget, the reply and 1/8 for the estimate's error, rounded up to 256: never 32768
    assert fake.num_ctx[-1] == 18176
    assert "context 32768 (big, from /api/show), num_ctx 18176" in spans


def test_a_model_that_cannot_call_tools_is_offered_none(
        gw: GatewayProcess, servers: tuple[FakeModelServer, FakeModelServer]) -> None:
    fake, _ = servers
    reply, spans = ask(gw, "plain", [user("tell me a joke")])
    assert reply == "echo: tell me a joke"
    assert not fake.requests[-1]["body"].get("tools")
    assert "tools: none offered" in spans
    assert "tools not offered: plain:2b cannot call tools" in spans.split(" | ")[1]
    calls = fake.calls
    with pytest.raises(openai.BadRequestError) as refused:
        ask(gw, "plain", [user("weather?")], tools=[WEATHER])
    assert "cannot call tools" in str(refused.value) and fake.calls == calls


def test_a_failing_api_show_falls_back_to_config(
        gw: GatewayProcess, servers: tuple[FakeModelServer, FakeModelServer]) -> None:
    _, old = servers
    reply, spans = ask(gw, "olden", [user("still there?")])
    assert reply == "echo: still there?"
    assert old.shows == ["olden"]
    assert old.num_ctx[-1] == 18176  # sized from config: the budget is still what is sent
    assert "context unknown (olden, from config)" in spans
    assert "olden: /api/show answered HTTP 500, so config values are used" in spans


def test_doctor_lists_what_each_model_takes_and_warns(
        gw: GatewayProcess, config: dict[str, Any]) -> None:
    parsed = parse_config(config, "config.yaml")
    url = config["models"]["tiny"]["endpoint"]
    tiny = check_fit("tiny", parsed.models["tiny"], url, parsed)
    assert tiny[0] == (True, f"model tiny at {url}: context 4096 (from /api/show), can call "
                             "tools, num_ctx 4096 sent, prompt budget 3185 tokens", "")
    assert tiny[1][0] is False and "gateway.context_tokens 16000 is more than tiny:1b takes "\
        "(4096 tokens, 512 kept for its reply): it is sent 3185" in tiny[1][1]
    assert "lower gateway.context_tokens to 3185" in tiny[1][2]
    plain = check_fit("plain", parsed.models["plain"], url, parsed, skills=True)
    assert plain[0][0] and "cannot call tools" in plain[0][1]
    assert plain[-1][0] is False and "plain:2b cannot call tools, so skills are not " \
        "offered to it" in plain[-1][1]
    doctor = run_cli(gw.home, "doctor")
    assert f"model tiny at {url}: context 4096 (from /api/show)" in doctor.stdout
    assert "plain:2b cannot call tools, so skills are not offered" in doctor.stdout
    assert "/api/show answered HTTP 500, so it is sized from config" in doctor.stdout


def test_a_long_tool_answer_grows_num_ctx_within_the_model(
        gw: GatewayProcess, servers: tuple[FakeModelServer, FakeModelServer]) -> None:
    """A tool's answer can make a call longer than the budget its turn was sized for: the
    call is told a num_ctx that holds it (Ollama would cut its start otherwise), never more
    than the model takes."""
    fake, _ = servers
    call = {"role": "assistant", "content": "", "tool_calls": [{
        "id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}
    answer = {"role": "tool", "tool_call_id": "c1", "content": "sunny " * 15000}
    ask(gw, "big", [user("weather?"), call, answer], tools=[WEATHER])
    assert 18176 < (fake.num_ctx[-1] or 0) <= 32768
