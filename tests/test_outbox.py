"""The outbox's rules with a real store, a push channel that records what it is given and a
clock the test moves: order per chat, backoff, Retry-After, refusals, recovery after a crash,
what a started message must name; and a skill host asking the gateway mid-call."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.channels.base import ChannelOptions, ChannelStatus, PushChannel
from gateway.config import OutboxConfig
from gateway.core.message import Message, Reply
from gateway.core.outbound import (
    DeliveryRefused,
    Outbound,
    RetryLater,
    SendRefused,
    parse_retry_after,
)
from gateway.core.outbox import Outbox, Sender
from gateway.core.store import Store
from gateway.guards.rate_limit import new_limiter
from gateway.observe.metrics import Metrics
from gateway.skills.catalog import SkillLoader, SkillSet
from gateway.skills.hostpool import SkillHostPool
from tests.fakes.clock import FakeClock


class RecordingChannel(PushChannel):
    """A push channel that takes what it is given, or raises what the test lined up."""

    name = "fake"

    def __init__(self, store: Store) -> None:  # no web server: only what the outbox uses
        self.options = ChannelOptions()
        self.services = SimpleNamespace(store=store)  # type: ignore[assignment]
        self.delivered: list[Outbound] = []
        self.failures: list[Exception] = []
        self.problem: str | None = None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> ChannelStatus:
        return ChannelStatus("connected")

    def push_problem(self) -> str | None:
        return self.problem

    def deliver(self, outbound: Outbound) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append(outbound)


class NotPush:
    name = "http"


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[SimpleNamespace]:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    channel = RecordingChannel(store)
    channels = {"fake": channel, "http": NotPush()}
    clock = FakeClock()
    policy = OutboxConfig(max_attempts=3, per_chat="5/min")
    metrics = Metrics()
    limiter = new_limiter()
    outbox = Outbox(store, lambda: channels, workspace=tmp_path, metrics=metrics,
                    limiter=lambda: limiter, policy=lambda: policy, clock=clock)
    outbox.recover()
    yield SimpleNamespace(store=store, channel=channel, outbox=outbox, clock=clock,
                          metrics=metrics, tmp=tmp_path,
                          sender=Sender(outbox, channel))  # stepped by hand, no thread
    store.close()


def known_chat(parts: SimpleNamespace, chat: str) -> None:
    """The gateway has answered `chat` on the fake channel (it has a session)."""
    if parts.store.latest_session("fake", chat) is None:
        parts.store.start_session(f"s-{chat}", "fake", chat, parts.clock())


def queue(parts: SimpleNamespace, chat: str, text: str) -> Outbound:
    known_chat(parts, chat)
    return parts.outbox.send("fake", chat, text, origin="api")


def counted(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value("moltbot_outbound_total",
                                              {"channel": "fake", "outcome": outcome})
    return value or 0.0


def test_a_row_is_stored_queued_then_sent_and_marked(parts: SimpleNamespace) -> None:
    row = queue(parts, "room", "hello")
    assert parts.outbox.rows.get(row.id).state == "queued"  # stored before anything is sent
    assert parts.sender.step() == 0.0
    assert [d.id for d in parts.channel.delivered] == [row.id]
    sent = parts.outbox.rows.get(row.id)
    assert (sent.state, sent.attempts, sent.sent_at) == ("sent", 1, parts.clock())
    assert [h["outcome"] for h in sent.history] == ["sent"]
    assert parts.sender.step() is None  # nothing left: sleep until woken
    assert counted(parts.metrics, "sent") == 1


def test_a_chat_keeps_its_order_while_other_chats_go_on(parts: SimpleNamespace) -> None:
    first = queue(parts, "a", "a1")
    second = queue(parts, "a", "a2")
    other = queue(parts, "b", "b1")
    parts.channel.failures = [RetryLater("HTTP 503")]
    assert parts.sender.step() == 0.0  # a1 fails and waits for its backoff
    retried = parts.outbox.rows.get(first.id)
    assert (retried.state, retried.last_error) == ("queued", "HTTP 503")
    assert 0.5 <= retried.next_try_at - parts.clock() <= 1.0  # 1 s, with jitter below it
    assert parts.sender.step() == 0.0  # b1 goes; a2 may not overtake a1
    assert [d.text for d in parts.channel.delivered] == ["b1"]
    wait = parts.sender.step()
    assert wait is not None and 0 < wait <= 1.0
    parts.clock.now = retried.next_try_at
    assert parts.sender.step() == 0.0 and parts.sender.step() == 0.0
    assert [d.text for d in parts.channel.delivered] == ["b1", "a1", "a2"]
    assert parts.outbox.rows.get(second.id).state == "sent"
    assert parts.outbox.rows.get(other.id).attempts == 1
    assert counted(parts.metrics, "retried") == 1


def test_retry_after_is_honoured_and_holds_the_channel(parts: SimpleNamespace) -> None:
    row = queue(parts, "room", "hello")
    queue(parts, "elsewhere", "hi")
    parts.channel.failures = [RetryLater("HTTP 429", retry_after=7)]
    parts.sender.step()
    retried = parts.outbox.rows.get(row.id)
    assert retried.next_try_at == parts.clock() + 7
    assert retried.last_error == "HTTP 429 (retry after 7 s)"
    assert parts.sender.step() == 7  # the platform said wait: no other chat goes either
    assert parts.channel.delivered == []
    parts.clock.now += 7
    parts.sender.step()
    parts.sender.step()
    assert sorted(d.chat for d in parts.channel.delivered) == ["elsewhere", "room"]


def test_a_refusal_fails_at_once_and_attempts_run_out(parts: SimpleNamespace) -> None:
    refused = queue(parts, "a", "one")
    tired = queue(parts, "b", "two")
    parts.channel.failures = [DeliveryRefused("HTTP 400: no such chat"),
                              *(RetryLater("ConnectError") for _ in range(3))]
    for _ in range(4):
        parts.sender.step()
        parts.clock.now += 400  # past any backoff
    failed = parts.outbox.rows.get(refused.id)
    assert (failed.state, failed.attempts) == ("failed", 1)
    assert failed.last_error == "refused: HTTP 400: no such chat"
    gave_up = parts.outbox.rows.get(tired.id)
    assert gave_up.state == "failed" and gave_up.attempts == 3
    assert gave_up.last_error == ("gave up after 3 attempts (outbox.max_attempts): "
                                  "ConnectError")
    assert [h["outcome"] for h in gave_up.history] == ["retry", "retry", "failed"]
    assert counted(parts.metrics, "failed") == 2
    again = parts.outbox.retry(tired.id)  # the console's Retry
    assert again is not None and (again.state, again.attempts) == ("queued", 0)
    parts.sender.step()
    assert parts.outbox.rows.get(tired.id).state == "sent"
    assert parts.outbox.retry(tired.id) is None  # only a failed row can be retried


def test_a_bug_in_the_channel_is_retried_like_a_5xx(parts: SimpleNamespace) -> None:
    row = queue(parts, "room", "x")
    parts.channel.failures = [KeyError("oops")]
    parts.sender.step()
    assert parts.outbox.rows.get(row.id).last_error == "KeyError in the fake channel"


def test_a_channel_that_cannot_send_keeps_its_rows(parts: SimpleNamespace) -> None:
    row = queue(parts, "room", "x")
    parts.channel.problem = "fake is switched off"
    assert parts.sender.step() is None  # until a reload wakes it
    assert parts.outbox.rows.get(row.id).state == "queued"
    parts.channel.problem = None
    assert parts.sender.step() == 0.0 and parts.channel.delivered


def test_after_a_crash_rows_go_again_and_waiting_replies_are_filled(
        parts: SimpleNamespace) -> None:
    rows, clock = parts.outbox.rows, parts.clock
    cut = queue(parts, "room", "cut off")
    rows.claim_next("fake", clock())  # the gateway died while this one was being sent
    answered = Message(channel="fake", sender="ada", chat="room", text="hi", client_id="p-1")
    parts.store.add_message(answered, None)
    parts.store.finish_message(answered.id, session_id=None, reply="hello ada", error=None,
                               route="chat", trace=[])
    filled = parts.outbox.expect_reply(answered)
    lost = parts.outbox.expect_reply(Message(channel="fake", sender="bo", chat="room",
                                             text="never answered"))
    parts.outbox.recover()  # the next start
    assert rows.get(cut.id).state == "queued"
    assert rows.get(cut.id).history[-1]["outcome"] == "interrupted"
    reply = rows.get(filled)
    assert (reply.state, reply.text, reply.to, reply.reply_to) == (
        "queued", "hello ada", "ada", "p-1")
    assert rows.get(lost).state == "failed"
    assert "retry of the same id answers it" in rows.get(lost).last_error
    for _ in range(3):
        parts.sender.step()
    assert [d.id for d in parts.channel.delivered] == [cut.id, filled]  # same ids as before


def test_a_platforms_retry_sends_the_same_reply_row_again(parts: SimpleNamespace) -> None:
    msg = Message(channel="fake", sender="ada", chat="room", text="hi", client_id="p-1")
    first = parts.outbox.expect_reply(msg)
    reply = Reply(msg.id, "fake", "room", "hello", client_id="p-1", to="ada")
    parts.outbox.reply_ready(first, reply)
    parts.sender.step()
    again = parts.outbox.expect_reply(Message(channel="fake", sender="ada", chat="room",
                                              text="hi", client_id="p-1"))
    kept = parts.outbox.reply_ready(again, reply)  # answered from the store: same msg_id
    assert kept is not None and kept.id == first and kept.state == "queued"
    assert parts.outbox.rows.get(again) is None
    parts.sender.step()
    assert [d.id for d in parts.channel.delivered] == [first, first]
    blocked = parts.outbox.expect_reply(msg)
    assert parts.outbox.reply_ready(blocked, Reply(msg.id, "fake", "room", "",
                                                   error="blocked")) is None
    assert parts.outbox.rows.get(blocked) is None  # nothing to say: no row


@pytest.mark.parametrize(("call", "code", "says"), [
    ({"channel": "nope"}, "bad_request", "There is no channel 'nope'; channels that can "
     "send: fake."),
    ({"channel": "http"}, "bad_request", "The http channel answers only the request"),
    ({"chat": "stranger"}, "bad_request", "fake has no chat 'stranger'"),
    ({"chat": ""}, "bad_request", '"chat" must be a non-empty string'),
    ({"text": " "}, "bad_request", '"text" must not be empty'),
    ({"text": 5}, "bad_request", '"text" must be a string'),
    ({"files": "x.pdf"}, "bad_request", "A file cannot be sent: \"files\" in a skill's "
     "answer must be a list of paths."),
    ({"files": ["config.yaml"]}, "bad_request", "A file cannot be sent: the skill answered "
     "with one of the gateway's own files"),
])
def test_what_a_started_message_must_name(parts: SimpleNamespace, call: dict[str, Any],
                                          code: str, says: str) -> None:
    known_chat(parts, "room")
    (parts.tmp / "config.yaml").write_text("{}\n", encoding="utf-8")
    given = {"channel": "fake", "chat": "room", "text": "hi", **call}
    with pytest.raises(SendRefused) as refused:
        parts.outbox.send(given["channel"], given["chat"], given["text"],
                          files=given.get("files", ()))
    assert refused.value.code == code and says in str(refused.value)


def test_a_channel_that_cannot_send_now_says_why(parts: SimpleNamespace) -> None:
    known_chat(parts, "room")
    parts.channel.problem = "fake is switched off"
    with pytest.raises(SendRefused) as refused:
        parts.outbox.send("fake", "room", "hi")
    assert (refused.value.code, str(refused.value)) == ("unavailable", "fake is switched off")


def test_files_are_kept_with_their_type_and_size(parts: SimpleNamespace) -> None:
    (parts.tmp / "files").mkdir()
    (parts.tmp / "files" / "report.pdf").write_bytes(b"%PDF-1.4 tiny")
    known_chat(parts, "room")
    row = parts.outbox.send("fake", "room", "", files=["files/report.pdf"])
    kept = parts.outbox.rows.get(row.id).files
    assert [{k: f[k] for k in ("name", "path", "media_type", "size")} for f in kept] == [{
        "name": "report.pdf", "path": "files/report.pdf", "media_type": "application/pdf",
        "size": 13}]
    assert kept[0]["sha256"] and kept[0]["id"]  # a whole Attachment: channels name it


def test_each_chat_has_its_limit(parts: SimpleNamespace) -> None:
    for n in range(5):
        queue(parts, "room", f"m{n}")
    with pytest.raises(SendRefused) as refused:
        queue(parts, "room", "one too many")
    assert refused.value.code == "rate_limited" and refused.value.retry_after
    assert "the limit is 5/min (outbox.per_chat)" in str(refused.value)
    queue(parts, "other", "another chat has its own budget")


def test_a_sender_wakes_when_a_row_arrives_and_stops_when_asked(
        parts: SimpleNamespace) -> None:
    parts.outbox.clock = time.time  # the real thread waits in real time
    known_chat(parts, "room")
    parts.outbox.start()
    try:
        row = parts.outbox.send("fake", "room", "wake up")
        deadline = time.monotonic() + 10
        while parts.outbox.rows.get(row.id).state != "sent" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert parts.outbox.rows.get(row.id).state == "sent"
    finally:
        assert parts.outbox.stop(timeout=5)


@pytest.mark.parametrize(("header", "seconds"), [
    ("3", 3.0), (None, None), ("soon", None), ("99999", 3600.0),
    ("Thu, 01 Jan 1970 00:00:10 GMT", 5.0),
])
def test_retry_after_headers(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=5.0) == seconds


SENDER = '''\
from moltbot_sdk import SendError, context

@context.handle(command="/tell")
def tell(msg):
    try:
        sent = context.send("fake", "room", "for the room: " + msg["text"], to="ada")
    except SendError as e:
        return "refused: " + str(e)
    return "sent " + sent
'''


def test_a_skill_asks_the_gateway_in_the_middle_of_its_call(tmp_path: Path) -> None:
    (tmp_path / "skills").mkdir()
    (tmp_path / "skills" / "tell.py").write_text(SENDER, encoding="utf-8")
    hosts = SkillHostPool(tmp_path, 1, {})
    asked: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def serve(question: dict[str, Any], msg: dict[str, Any]) -> dict[str, Any]:
        asked.append((question, msg))
        if "no" in question["text"]:
            return {"error": "fake has no chat 'room'", "code": "bad_request"}
        return {"id": "o1", "state": "queued"}

    hosts.serve = serve
    try:
        skills = SkillLoader(tmp_path, hosts, default_timeout=5.0).build(SkillSet())
        handler = skills.by_command("tell")
        assert handler is not None
        result = handler.call({"text": "build done", "id": "m1"})
        assert result.text == "sent o1"
        assert asked[0] == ({"op": "send", "channel": "fake", "chat": "room",
                             "text": "for the room: build done", "to": "ada", "files": []},
                            {"text": "build done", "id": "m1"})
        assert [(s["step"], s["outcome"]) for s in result.spans] == [("send:fake", "ok")]
        refused = handler.call({"text": "no", "id": "m2"})
        assert refused.text == "refused: fake has no chat 'room'"
        assert refused.spans[0]["outcome"] == "refused"
    finally:
        hosts.close()
