"""config.yaml: the guide's snippet works alone; every mistake is named by its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.channels.table import channel_options
from gateway.common.options import ConfigError, parse_duration
from gateway.config import bind_problem, load_config, parse_config

GUIDE_SNIPPET = """
models:
  llama2:
    endpoint: "http://127.0.0.1:11434"
    api_key: "your-api-key-here"
    max_tokens: 512
"""


def test_the_guides_snippet_alone_is_a_working_config(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GUIDE_SNIPPET, encoding="utf-8")
    config = load_config(path)
    model = config.models["llama2"]
    assert model.all_endpoints() == ["http://127.0.0.1:11434"]
    assert model.provider_for(model.all_endpoints()[0]) == "ollama"
    assert config.chat_model() == "llama2"
    assert config.gateway.port == 18789 and config.gateway.host == "127.0.0.1"
    assert config.gateway.session_timeout == 1800


def test_the_shipped_template_is_valid() -> None:
    template = Path(__file__).resolve().parent.parent / "gateway" / "config_template.yaml"
    config = load_config(template)
    assert "llama2" in config.models


def test_guide_sections_parse_with_their_own_spellings() -> None:
    config = parse_config({
        "auth": {"jwt_secret": "s" * 32, "token_expire": "24h",
                 "rate_limit": {"global": "1000/min", "per_ip": "100/min"}},
        "gateway": {"worker_processes": 1, "max_connections": 1000, "keepalive_timeout": 65},
        "channels": {"websocket": {"enabled": False}},
        "security": {"stranger_mode": "direct_block", "code_expire": 300},
    })
    assert config.security.stranger_mode == "direct_block"
    assert config.auth.token_expire == 86400
    assert config.auth.rate_limit.global_ == "1000/min"
    assert config.auth.rate_limit.exempt == ["127.0.0.0/8", "::1/128"]
    assert config.channels == {"websocket": {"enabled": False}}


def test_keys_that_would_do_nothing_are_refused_as_not_supported_yet() -> None:
    """A key accepted and ignored is a lie: each of these says so, with its path."""
    with pytest.raises(ConfigError) as caught:
        parse_config({
            "gateway": {"worker_processes": 4},
            "auth": {"jwt_secret": "strong-random-string", "rate_limit": {"per_ip": "lots"}},
        })
    problems = caught.value.problems
    assert any(p.startswith("gateway.worker_processes: several worker processes are not "
                            "supported yet") for p in problems)
    # each channel checks its own options, and the table refuses a channel it does not have
    with pytest.raises(ConfigError) as unknown:
        channel_options(parse_config({"channels": {"sms": {"bot_token": "t"}}}),
                        "config.yaml")
    assert unknown.value.problems[0].startswith(
        "channels.sms: channel 'sms' is not supported yet; this version has http, "
        "websocket, console, enterprise_im")
    assert any(p.startswith("auth.jwt_secret: String should have at least 32 characters")
               for p in problems)
    assert any(p.startswith("auth.rate_limit.per_ip: expected a rate such as '100/min'")
               for p in problems)
    assert "strong-random-string" not in str(caught.value)  # a secret is never echoed
    assert len(problems) == 3


def test_openai_provider_is_inferred_from_a_v1_path() -> None:
    config = parse_config({"models": {"qwen": {"endpoint": "http://127.0.0.1:8000/v1"}}})
    model = config.models["qwen"]
    assert model.provider_for("http://127.0.0.1:8000/v1") == "openai"


def test_every_bad_key_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"models": {"llama2": {"endpoint": "http://x", "max_tokens": "lots"}},
                      "gateway": {"port": 99999, "max_conections": 5},
                      "logs": {"level": "chatty"}})
    text = str(caught.value)
    assert "models.llama2.max_tokens" in text
    assert "gateway.port" in text
    assert "gateway.max_conections: unknown key" in text
    assert "logs.level" in text
    assert len(caught.value.problems) == 4


def test_a_model_needs_an_endpoint() -> None:
    with pytest.raises(ConfigError, match="give an endpoint"):
        parse_config({"models": {"llama2": {"max_tokens": 5}}})


def test_env_values_are_expanded_and_missing_ones_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IM_PLATFORM_TOKEN", "enterprise:abc123")
    config = parse_config({"auth": {"tokens": ["${IM_PLATFORM_TOKEN}"]}})
    assert config.auth.tokens == ["enterprise:abc123"]
    monkeypatch.delenv("IM_PLATFORM_TOKEN")
    with pytest.raises(ConfigError, match=r"auth\.tokens\[0\]: environment "
                                          r"variable IM_PLATFORM_TOKEN is not set"):
        parse_config({"auth": {"tokens": ["${IM_PLATFORM_TOKEN}"]}})


def test_keyring_values_come_from_the_lookup() -> None:
    config = parse_config({"auth": {"jwt_secret": "${keyring:jwt}"}},
                          secret_lookup={"jwt": "from-keyring" * 3}.get)
    assert config.auth.jwt_secret == "from-keyring" * 3
    with pytest.raises(ConfigError, match="no secret 'other' in the OS keyring"):
        parse_config({"auth": {"jwt_secret": "${keyring:other}"}}, secret_lookup={}.get)


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("models:\n  llama2: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 3"):
        load_config(path)


@pytest.mark.parametrize(("value", "seconds"), [(65, 65), ("30m", 1800), ("8h", 28800),
                                                ("500ms", 0.5), ("7d", 604800)])
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_binding_off_loopback_needs_auth() -> None:
    open_config = parse_config({})
    assert bind_problem("127.0.0.1", open_config) is None
    assert "auth.jwt_secret" in (bind_problem("0.0.0.0", open_config) or "")
    assert bind_problem("0.0.0.0", parse_config({"auth": {"tokens": ["t" * 32]}})) is None


def test_counts_named_like_tokens_are_shown_and_secrets_are_not() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"gateway": {"context_tokens": "lots"},
                      "models": {"m": {"endpoint": "http://x", "max_tokens": "many",
                                       "api_key": ["not", "a", "string"]}}})
    text = str(caught.value)
    assert "gateway.context_tokens" in text and "got 'lots'" in text
    assert "got 'many'" in text
    assert "models.m.api_key" in text and "value not shown: it is a secret" in text
