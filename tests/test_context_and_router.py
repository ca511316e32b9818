"""What the model sees, and which route a text takes."""

from __future__ import annotations

from gateway.core.context import build_messages
from gateway.core.router import help_text, route
from gateway.knowledge import estimate_tokens


def test_newest_turns_are_kept_within_the_budget() -> None:
    history = [(f"question {i} " + "x" * 200, f"answer {i}") for i in range(20)]
    messages = build_messages(history, "now?", budget=400)
    contents = [m["content"] for m in messages]
    assert contents[0].startswith("You are Moltbot")
    assert contents[-1] == "now?"
    assert contents[-2] == "answer 19" and "question 0 " not in " ".join(contents)
    assert sum(estimate_tokens(c) for c in contents) <= 400


def test_cjk_text_counts_a_token_per_character() -> None:
    assert estimate_tokens("你好世界") >= 4
    assert estimate_tokens("你好世界") > estimate_tokens("abcd")


def test_commands_then_chat() -> None:
    assert route("/reset").name == "reset"
    assert route("/NEW please").name == "new"
    assert route("/help").kind == "command"
    assert route("hello").kind == "chat"
    assert route("/").kind == "chat"
    assert route("/usr/bin holds programs").kind == "chat"  # a path, not a command


def test_an_unknown_command_is_answered_with_the_commands_not_sent_to_the_model() -> None:
    unknown = route("/boom now")
    assert (unknown.kind, unknown.name, unknown.args) == ("command", "unknown", "boom")
    text = help_text(unknown=unknown.args)
    assert text.startswith("There is no command /boom.\nCommands:\n/reset")
