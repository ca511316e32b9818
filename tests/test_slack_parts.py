"""The Slack channel's parts without a gateway: its options as config.yaml gives them, which
events it answers, and its Web API client's failures against FakeSlack (the real slack_sdk)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from gateway.channels.slack import SlackOptions
from gateway.channels.slack_events import (
    Seen,
    addressed,
    readable,
    reply_place,
    without_mention,
)
from gateway.channels.slack_web import SlackWeb
from gateway.core.outbound import DeliveryRefused, RetryLater
from tests.fakes.fake_slack import BOT_ID, BOT_TOKEN, BOT_USER, FakeSlack

APP = "xapp-1-A0-1-x"


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


# -- options ------------------------------------------------------------------------------
def test_a_bot_token_switches_it_on_in_socket_mode_by_default() -> None:
    options = SlackOptions.model_validate({"bot_token": BOT_TOKEN, "app_token": APP})
    assert options.enabled and options.mode == "socket"
    assert options.api_base == "https://slack.com/api/"
    assert BOT_TOKEN not in repr(options)
    assert not SlackOptions.model_validate({}).enabled


@pytest.mark.parametrize(("given", "says"), [
    ({"bot_token": "xoxp-user-token", "app_token": APP}, "xoxb-"),
    ({"bot_token": BOT_TOKEN}, "app_token"),
    ({"bot_token": BOT_TOKEN, "app_token": BOT_TOKEN}, "xapp-"),
    ({"bot_token": BOT_TOKEN, "mode": "events"}, "signing_secret"),
    ({"bot_token": BOT_TOKEN, "app_token": APP, "api_base": "slack.com"}, "http(s) URL"),
    ({"bot_token": BOT_TOKEN, "app_token": APP, "callback_path": "slack"}, "path"),
    ({"bot_token": BOT_TOKEN, "app_token": APP, "groups": "off"}, "mention"),
    ({"bot_token": BOT_TOKEN, "app_token": APP, "ping_interval": "10s",
      "stale_after": "15s"}, "stale_after"),
])
def test_a_wrong_option_says_what_to_set(given: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SlackOptions.model_validate(given)
    assert says in str(caught.value)


def test_the_api_base_keeps_its_slash_for_the_sdk() -> None:
    options = SlackOptions.model_validate({"bot_token": BOT_TOKEN, "app_token": APP,
                                           "api_base": "https://slack-gov.com/api"})
    assert options.api_base == "https://slack-gov.com/api/"


# -- which events are answered ------------------------------------------------------------
def event(**fields: Any) -> dict[str, Any]:
    return {"type": "message", "user": "U0ALICE", "text": "hi", "ts": "1.000200",
            "channel": "D0ALICE", "channel_type": "im", **fields}


def test_direct_messages_are_answered_without_a_thread() -> None:
    found = addressed(event(), "mention", BOT_USER, BOT_ID)
    assert found is not None and found.thread_ts is None
    assert found.client_id == "D0ALICE:1.000200"
    in_thread = addressed(event(thread_ts="1.000100"), "mention", BOT_USER, BOT_ID)
    assert in_thread is not None and in_thread.client_id == "D0ALICE:1.000200:1.000100"
    assert reply_place(in_thread.client_id) == ("1.000200", "1.000100")
    assert reply_place(None) == (None, None)


@pytest.mark.parametrize("fields", [
    {"bot_id": BOT_ID, "user": BOT_USER},  # its own reply
    {"user": BOT_USER},
    {"bot_id": "B0OTHER", "user": "U0OTHER"},
    {"subtype": "bot_message", "user": ""},
    {"subtype": "message_changed"},
    {"subtype": "message_deleted"},
    {"subtype": "channel_join"},
    {"type": "reaction_added"},
    {"channel_type": "channel", "channel": "C0GENERAL"},  # not mentioned: app_mention is
])
def test_what_is_never_answered(fields: dict[str, Any]) -> None:
    assert addressed(event(**fields), "mention", BOT_USER, BOT_ID) is None


def test_channels_mention_or_everything_and_always_in_the_thread() -> None:
    mention = event(type="app_mention", channel="C0GENERAL", text=f"<@{BOT_USER}> hi there")
    mention.pop("channel_type")
    found = addressed(mention, "mention", BOT_USER, BOT_ID)
    assert found is not None and found.text == "hi there" and found.thread_ts == "1.000200"
    plain = event(channel_type="channel", channel="C0GENERAL", subtype="file_share")
    assert addressed(plain, "all", BOT_USER, BOT_ID) is not None


def test_a_mention_is_dropped_before_the_bot_knows_its_id() -> None:
    assert without_mention("<@U0BOT> hello  there", None) == "hello there"
    assert without_mention("ask <@U0OTHER> first", None) == "ask <@U0OTHER> first"


def test_slacks_markup_is_read_as_typed() -> None:
    assert readable("a &lt; b &amp;&amp; c &gt; d") == "a < b && c > d"
    assert readable("see <https://x.test/a|the docs> or <https://y.test>") == \
        "see the docs (https://x.test/a) or https://y.test"
    assert readable("<mailto:a@b.test|a@b.test> at <http://y.test|y.test>") == \
        "a@b.test at http://y.test"
    found = addressed(event(text="is 1 &lt; 2?"), "mention", BOT_USER, BOT_ID)
    assert found is not None and found.text == "is 1 < 2?"


def test_a_message_seen_once_by_channel_and_ts() -> None:
    seen = Seen(size=2)
    first = addressed(event(), "mention", BOT_USER, BOT_ID)
    again = addressed(event(thread_ts="9.9"), "mention", BOT_USER, BOT_ID)
    assert first is not None and again is not None
    assert seen.first(first) and not seen.first(again)


# -- the Web API client against FakeSlack -------------------------------------------------
def test_posting_into_a_thread_and_a_file(slack: FakeSlack, tmp_path: Path) -> None:
    web = SlackWeb(slack.api_base, slack.bot_token)
    assert web.whoami()["user_id"] == BOT_USER
    path = tmp_path / "a.txt"
    path.write_bytes(b"data")
    web.post("C0ONE", "hello **there**", "1.000100", [(path, "a.txt")])
    assert slack.posted[-1].text == "hello **there**"  # markdown_text: Slack renders it
    assert slack.posted[-1].thread_ts == "1.000100"
    assert slack.state.shared[-1].data == b"data"


def test_a_long_reply_is_split_under_slacks_limit(slack: FakeSlack) -> None:
    web = SlackWeb(slack.api_base, slack.bot_token)
    before = len(slack.posted)
    web.post("C0LONG", "word " * 5000, None, [])
    pieces = slack.posted[before:]
    assert len(pieces) == 3 and all(len(p.text) <= 12000 for p in pieces)


def test_rate_limited_is_retried_after_slacks_wait(slack: FakeSlack) -> None:
    slack.rate_limited, slack.retry_after = 1, 7
    with pytest.raises(RetryLater) as caught:
        SlackWeb(slack.api_base, slack.bot_token).post("C0ONE", "hi", None, [])
    assert caught.value.retry_after == 7


@pytest.mark.parametrize(("token", "channel", "says"), [
    ("xoxb-wrong", "C0ONE", "channels.slack.bot_token"),
    (BOT_TOKEN, "C0NOTIN", "/invite"),
    (BOT_TOKEN, "X0NOPE", "channel_not_found"),
])
def test_refusals_say_what_to_fix(slack: FakeSlack, token: str, channel: str,
                                  says: str) -> None:
    slack.not_in = {"C0NOTIN"}
    with pytest.raises(DeliveryRefused) as caught:
        SlackWeb(slack.api_base, token).post(channel, "hi", None, [])
    assert says in str(caught.value)


def test_an_unreachable_slack_is_retried() -> None:
    with pytest.raises(RetryLater):
        SlackWeb("http://127.0.0.1:9/api/", BOT_TOKEN).post("C0ONE", "hi", None, [])


def test_a_shared_file_needs_the_bot_token(slack: FakeSlack) -> None:
    shared = slack.share_file("n.txt", b"words", "text/plain")
    into = io.BytesIO()
    SlackWeb(slack.api_base, slack.bot_token).download(shared["url_private"], into)
    assert into.getvalue() == b"words"
    with pytest.raises(httpx.HTTPError, match="files:read"):
        SlackWeb(slack.api_base, "xoxb-wrong").download(shared["url_private"], io.BytesIO())
