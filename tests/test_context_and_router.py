"""What the model sees, and which route a text takes."""

from __future__ import annotations

from gateway.core.context import SYSTEM_PROMPT, build_messages, fit_client_messages
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


def test_a_clients_conversation_keeps_its_order_its_system_messages_and_its_newest_turns(
) -> None:
    call = {"id": "c1", "name": "lookup", "arguments": {"q": "x" * 200}}
    given = [{"role": "system", "content": "Be terse."},
             {"role": "user", "content": "old " * 40},
             {"role": "assistant", "content": "", "tool_calls": [call]},
             {"role": "tool", "tool_call_id": "c1", "name": "lookup", "content": "y " * 40},
             {"role": "system", "content": "Mind the date."},
             {"role": "assistant", "content": "found it"},
             {"role": "user", "content": "and now?"}]
    whole, left_out = fit_client_messages(given, 10_000)
    assert whole == given and left_out == 0
    # room for the tool's answer but not for its call: the answer goes with it
    budget = sum(estimate_tokens(m["content"]) for m in [given[0], *given[3:]])
    tight, left_out = fit_client_messages(given, budget)
    assert [m["content"] for m in tight] == ["Be terse.", "Mind the date.", "found it",
                                             "and now?"]
    assert left_out == 3
    # the last message stays whatever its size, and ours leads when the client has no system
    alone, _ = fit_client_messages([{"role": "user", "content": "long " * 500}], 10)
    assert alone == [{"role": "system", "content": SYSTEM_PROMPT},
                     {"role": "user", "content": "long " * 500}]


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
