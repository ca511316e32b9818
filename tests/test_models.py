"""Model clients and the endpoint pool, against the fake model server with the real clients."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from gateway.models.base import Cancelled, EndpointDown, ModelError, NoModelAvailable
from gateway.models.ollama_provider import OllamaProvider
from gateway.models.openai_provider import OpenAIProvider
from gateway.models.pool import ModelPool
from tests.conftest import free_port
from tests.fakes.fake_model import FakeModelServer

HELLO = [{"role": "user", "content": "hello"}]


_opened: list[OllamaProvider | OpenAIProvider] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Every client a test opens is closed, so no pooled socket outlives its test."""
    yield
    while _opened:
        _opened.pop().close()


def ollama(url: str) -> OllamaProvider:
    _opened.append(OllamaProvider(url, "llama2", max_tokens=32, timeout=10))
    return _opened[-1]


def openai_compat(url: str, **kwargs: object) -> OpenAIProvider:
    _opened.append(OpenAIProvider(url + "/v1", "qwen", max_tokens=16, **kwargs))  # type: ignore[arg-type]
    return _opened[-1]


def test_ollama_streams_and_sends_num_predict(fake_model: FakeModelServer) -> None:
    pieces: list[str] = []
    result = ollama(fake_model.url).chat(HELLO, on_delta=pieces.append)
    assert result.text == "echo: hello" and "".join(pieces) == result.text
    assert len(pieces) >= 2
    assert fake_model.requests[-1]["body"]["options"] == {"num_predict": 32}


def test_openai_compatible_endpoint(fake_model: FakeModelServer) -> None:
    fake_model.api_key = "sk-test"
    provider = openai_compat(fake_model.url, api_key="sk-test")
    assert provider.chat(HELLO).text == "echo: hello"
    assert fake_model.requests[-1]["body"]["max_tokens"] == 16


def test_tool_calls_come_back_in_one_shape(fake_model: FakeModelServer) -> None:
    fake_model.tool_call_when(contains="faq", name="faq_query", arguments={"q": "install"})
    tools = [{"type": "function", "function": {"name": "faq_query", "description": "FAQ",
                                               "parameters": {"type": "object"}}}]
    ask = [{"role": "user", "content": "faq please"}]
    for provider in (ollama(fake_model.url), openai_compat(fake_model.url)):
        result = provider.chat(ask, tools=tools)
        assert [(c["name"], c["arguments"]) for c in result.tool_calls] == [
            ("faq_query", {"q": "install"})]


def test_unknown_model_is_a_model_error_with_the_fix(fake_model: FakeModelServer) -> None:
    fake_model.known_models = {"mistral"}
    with pytest.raises(ModelError, match="ollama pull llama2") as caught:
        ollama(fake_model.url).chat(HELLO)
    assert not isinstance(caught.value, NoModelAvailable)


def test_cancel_stops_the_stream(fake_model: FakeModelServer) -> None:
    fake_model.delay_chunk = 0.2
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        ollama(fake_model.url).chat(HELLO, on_delta=lambda _: cancel.set(), cancel=cancel)
    assert fake_model.wait_for(lambda: fake_model.disconnects >= 1, 5)


def test_pool_fails_over_and_cools_the_dead_endpoint_down(fake_model: FakeModelServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    now = [0.0]
    pool = ModelPool("llama2", [ollama(dead), ollama(fake_model.url)], clock=lambda: now[0])
    assert pool.chat(HELLO).endpoint == fake_model.url
    status = {s["endpoint"]: s for s in pool.status()}
    assert status[dead]["failures"] == 1 and status[dead]["cooling_down_s"] == 1.0
    calls = fake_model.calls
    for _ in range(4):  # while cooling down, the dead endpoint is not tried at all
        assert pool.chat(HELLO).endpoint == fake_model.url
    assert fake_model.calls == calls + 4
    assert {s["endpoint"]: s for s in pool.status()}[dead]["failures"] == 1


def test_pool_fails_over_on_5xx(fake_model: FakeModelServer) -> None:
    with FakeModelServer() as broken:
        broken.fail_status = 500
        pool = ModelPool("llama2", [ollama(broken.url), ollama(fake_model.url)])
        results = {pool.chat(HELLO).endpoint for _ in range(2)}
        assert results == {fake_model.url}


def test_pool_spreads_calls_over_healthy_endpoints(fake_model: FakeModelServer) -> None:
    with FakeModelServer() as second:
        pool = ModelPool("llama2", [ollama(fake_model.url), ollama(second.url)])
        used = [pool.chat(HELLO).endpoint for _ in range(4)]
        assert used.count(fake_model.url) == 2 and used.count(second.url) == 2


def test_all_endpoints_down_names_each_and_the_fix() -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    pool = ModelPool("llama2", [ollama(u) for u in dead], config_hint="/home/me/config.yaml")
    with pytest.raises(NoModelAvailable) as caught:
        pool.chat(HELLO)
    text = str(caught.value)
    assert all(u in text for u in dead)
    assert "connection refused" in text and "/home/me/config.yaml" in text


def test_openai_refusals_say_whether_another_endpoint_may_answer(
        fake_model: FakeModelServer) -> None:
    fake_model.api_key = "sk-right"
    with pytest.raises(ModelError, match="HTTP 401") as refused:
        openai_compat(fake_model.url, api_key="sk-wrong").chat(HELLO)
    assert not isinstance(refused.value, EndpointDown)  # another endpoint would refuse too
    fake_model.api_key = None
    fake_model.fail_status = 429
    with pytest.raises(EndpointDown, match="HTTP 429"):
        openai_compat(fake_model.url).chat(HELLO)


def test_a_cancelled_call_never_leaves_its_connection_to_the_next(
        fake_model: FakeModelServer) -> None:
    """The next call on the same client gets a whole answer of its own, not the rest of the
    abandoned stream."""
    provider = ollama(fake_model.url)
    fake_model.delay_chunk = 0.2
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        provider.chat(HELLO, on_delta=lambda _: cancel.set(), cancel=cancel)
    fake_model.delay_chunk = 0
    pieces: list[str] = []
    assert provider.chat(HELLO, on_delta=pieces.append).text == "echo: hello"
    assert "".join(pieces) == "echo: hello"


def test_a_kept_alive_connection_the_server_closed_is_not_used_again(
        fake_model: FakeModelServer) -> None:
    """A model server restarted between two messages (its idle connections cut) answers the
    second one: the client opens a new connection instead of failing on the dead one."""
    provider = ollama(fake_model.url)
    assert provider.chat(HELLO).text == "echo: hello"
    kept = list(provider.client._idle)
    assert len(kept) == 1  # kept alive for the next call
    fake_model.stop()
    fake_model.start()
    pieces: list[str] = []
    assert provider.chat(HELLO, on_delta=pieces.append).text == "echo: hello"
    assert "".join(pieces) == "echo: hello"
    assert provider.client._idle and provider.client._idle[0] is not kept[0]
