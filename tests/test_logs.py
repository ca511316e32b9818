"""Secrets never reach a log line."""

from __future__ import annotations

from gateway.observe.redact import redact


def test_tokens_and_keys_are_masked() -> None:
    line = redact("auth Bearer mb_abcdefghijklmnopqrstuvwxyz0123 api_key=sk-123456 ok")
    assert "abcdefghijklmnop" not in line and "sk-123456" not in line
    assert redact("plain text stays") == "plain text stays"
