"""Sizing to the model: its card (/api/show), the window and num_ctx, the tools that fit, and
the pool reading each endpoint's card once (again after a failure)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.common.options import ConfigError
from gateway.config import parse_config
from gateway.core.fit import fit_turn
from gateway.models.card import CardUnavailable, ModelCard, parse_show, read_card
from gateway.models.ollama_provider import OllamaProvider
from gateway.models.options import ModelConfig
from gateway.models.pool import CARD_RETRY, ModelPool
from gateway.models.window import size_window
from tests.fakes.fake_model import FakeModelServer, model_card


def cfg(**extra: Any) -> ModelConfig:
    return ModelConfig(endpoint="http://127.0.0.1:11434", **extra)


def spec(name: str, words: int = 10) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": "word " * words,
                                             "parameters": {"type": "object"}}}


def test_a_card_says_context_tools_and_the_modelfile_window() -> None:
    card = parse_show(model_card(131072, tools=True, num_ctx=8192))
    assert card == ModelCard(context_length=131072, modelfile_ctx=8192, tools=True)
    assert card.window == 8192  # the owner's chosen window caps the trained length
    assert parse_show(model_card(4096, tools=False)).tools is False
    older = parse_show(model_card(4096, capabilities=False))  # Ollama before capabilities
    assert older.tools is None and older.window == 4096
    with pytest.raises(CardUnavailable):
        parse_show(["not", "a", "card"])


def test_read_card_over_http_and_its_failures() -> None:
    with FakeModelServer() as fake:
        fake.card("tiny:1b", context_length=4096, tools=False)
        assert read_card(fake.url, "tiny:1b") == ModelCard(4096, None, False)
        fake.known_models = {"tiny:1b"}
        with pytest.raises(CardUnavailable, match="HTTP 404"):
            read_card(fake.url, "absent")
        url = fake.url
    with pytest.raises(CardUnavailable, match="could not be reached"):
        read_card(url, "tiny:1b")


def test_a_small_model_cuts_the_budget_and_num_ctx_never_passes_it() -> None:
    window = size_window("tiny", cfg(model="tiny:1b"), [ModelCard(4096, None, True)], 16000)
    # (4096 - 512 for the reply) less 1/9 for the estimate's error
    assert (window.context, window.prompt_tokens, window.num_ctx) == (4096, 3185, 4096)
    assert window.notes == ("context cut to 3185 tokens: gateway.context_tokens is 16000 but "
                            "tiny:1b takes 4096 (with 512 for its reply)",)


def test_a_big_model_is_told_the_num_ctx_of_the_budget() -> None:
    window = size_window("big", cfg(), [ModelCard(131072, None, True)], 2048)
    assert (window.prompt_tokens, window.num_ctx) == (2048, 2816)  # 2048 + 512 + 256
    assert window.notes == ()


def test_config_overrides_what_the_model_says() -> None:
    card = ModelCard(131072, None, False)
    window = size_window("m", cfg(context_length=4096, tools=True), [card], 16000)
    assert (window.context, window.source, window.tools) == (4096, "models.m.context_length",
                                                             True)
    off = size_window("m", cfg(tools=False), [ModelCard(4096, None, True)], 2048)
    assert not off.tools and "tools not offered: models.m.tools is false" in off.notes


def test_the_smallest_endpoint_counts_and_a_failed_card_falls_back() -> None:
    cards = [ModelCard(8192, None, True), ModelCard(4096, None, None),
             ModelCard(failed="/api/show timed out")]
    window = size_window("m", cfg(), cards, 16000)
    assert window.context == 4096 and window.tools
    assert "m: /api/show timed out, so config values are used" in window.notes
    alone = size_window("m", cfg(), [ModelCard(failed="/api/show timed out")], 2048)
    assert (alone.context, alone.prompt_tokens, alone.num_ctx) == (None, 2048, 2816)


def test_a_model_that_cannot_call_tools_is_offered_none() -> None:
    window = size_window("m", cfg(model="gemma:2b"), [ModelCard(8192, None, False)], 2048)
    fit = fit_turn(window, [spec("greet")], [spec("get_weather")])
    assert fit.offered == [] and fit.tool_tokens == 0
    assert "tools not offered: gemma:2b cannot call tools" in fit.describe()


def test_our_tools_take_at_most_a_third_of_a_small_budget_client_ones_always_go() -> None:
    window = size_window("m", cfg(max_tokens=64), [ModelCard(1024, None, True)], 2048)
    ours = [spec(f"skill{i}", 60) for i in range(6)]  # ~100 tokens each
    fit = fit_turn(window, ours, [spec("theirs", 60)])
    assert fit.tool_tokens <= window.room // 3 == 853 // 3  # (1024 - 64) * 8/9
    assert [t["function"]["name"] for t in fit.offered] == ["skill0", "theirs"]
    assert fit.left_out == ("skill1", "skill2", "skill3", "skill4", "skill5")
    assert "not offered for room: skill1, skill2" in fit.describe()
    assert fit.budget == window.prompt_tokens - fit.tool_tokens


def test_num_ctx_grows_for_a_long_call_up_to_the_model() -> None:
    window = size_window("m", cfg(max_tokens=64), [ModelCard(8192, None, True)], 1024)
    fit = fit_turn(window, [])
    assert fit.num_ctx_for([{"role": "user", "content": "hi"}]) == window.num_ctx == 1280
    assert fit.num_ctx_for([{"role": "tool", "content": "x" * 20000}]) == 5888
    assert fit.num_ctx_for([{"role": "tool", "content": "x" * 90000}]) == 8192


def test_context_length_must_leave_room_beside_the_reply() -> None:
    with pytest.raises(ConfigError, match="context_length 600 leaves no room"):
        parse_config({"models": {"m": {"endpoint": "http://127.0.0.1:11434",
                                       "context_length": 600, "max_tokens": 512}}}, "c.yaml")


def test_the_pool_reads_each_card_once_and_again_after_a_failure() -> None:
    now = [0.0]
    with FakeModelServer() as fake:
        fake.card("tiny:1b", context_length=4096)
        fake.show_status = 500
        pool = ModelPool("tiny", [OllamaProvider(fake.url, "tiny:1b", max_tokens=64)],
                         clock=lambda: now[0], config=cfg(model="tiny:1b", max_tokens=64),
                         context_tokens=16000)
        try:
            first = pool.window(wait=5)
            assert first.context is None and "HTTP 500" in first.notes[0]
            fake.show_status = None
            assert pool.window(wait=5).context is None  # not asked again yet
            assert fake.shows == ["tiny:1b"]
            now[0] += CARD_RETRY
            assert pool.window(wait=5).context == 4096
            pool.window(wait=5)
            assert fake.shows == ["tiny:1b", "tiny:1b"]
            pool.chat([{"role": "user", "content": "hi"}])
            assert fake.num_ctx == [pool.window().num_ctx] == [4096]
            pool._mark_down(pool.endpoints[0], "refused")  # a failed call: read it again
            assert pool.window(wait=5).context == 4096 and len(fake.shows) == 3
        finally:
            pool.close()


def test_a_slow_card_sizes_from_config_until_it_comes() -> None:
    with FakeModelServer() as fake:
        fake.card("tiny:1b", context_length=4096)
        fake.hang_show = True
        pool = ModelPool("tiny", [OllamaProvider(fake.url, "tiny:1b", max_tokens=64)],
                         config=cfg(model="tiny:1b", max_tokens=64), context_tokens=16000)
        try:
            waited = pool.window(wait=0.1)
            assert waited.context is None and waited.prompt_tokens == 16000
            assert waited.notes == ("tiny:1b: /api/show has not answered yet, so config "
                                    "values are used",)
            fake.hang_show = False
            assert fake.wait_for(lambda: pool.window().context == 4096)
            assert fake.shows == ["tiny:1b"]
        finally:
            pool.close()


def test_a_small_budget_on_a_large_model_keeps_its_tools() -> None:
    window = size_window("m", cfg(max_tokens=64), [ModelCard(32768, None, True)], 512)
    fit = fit_turn(window, [spec(f"tool{i}", 60) for i in range(6)])
    assert fit.left_out == () and fit.budget == 256  # the history gives way, at its floor


def test_a_declaration_is_counted_by_what_it_holds_not_by_its_name() -> None:
    """Token counts are kept per declaration (its name, description and parameters object):
    a tool of the same name with other parameters is counted anew, never given the other's."""
    small = {"type": "object", "properties": {"q": {"type": "string"}}}
    large = {"type": "object", "properties": {f"p{i}": {"type": "string", "description":
                                                         "a long parameter " * 20}
                                              for i in range(20)}}

    def spec(parameters: dict[str, Any]) -> dict[str, Any]:
        return {"type": "function", "function": {"name": "lookup", "description": "Look up.",
                                                 "parameters": parameters}}

    window = size_window("m", cfg(), [ModelCard(32768, None, True)], 8192)
    first = fit_turn(window, [spec(small)]).tool_tokens
    again = fit_turn(window, [spec(small)]).tool_tokens
    other = fit_turn(window, [spec(large)]).tool_tokens
    assert first == again and other > 10 * first
