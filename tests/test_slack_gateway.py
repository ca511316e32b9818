"""The Slack channel end to end: the real gateway process, its Socket Mode child running the
real slack_sdk, against FakeSlack (`api_base`); then the same gateway reloaded into Events API
mode. One gateway for the module: the tests run in order, each waiting for its own replies."""

from __future__ import annotations

import os
import re
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from tests.conftest import GatewayProcess, command_line, free_port, model_config, write_config
from tests.fakes.fake_model import FakeModelServer
from tests.fakes.fake_slack import BOT_ID, BOT_USER, FakeSlack, Posted
from tests.skill_sources import report_skill

ALICE, BOB = "U0ALICE", "U0BOB"
SECURITY = {"stranger_mode": "verification_code", "allowlist": [f"slack:{ALICE}"]}


def readme_snippets() -> list[dict[str, Any]]:
    """The `channels.slack` snippets of README's Slack section, as written."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Slack\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    return [yaml.safe_load(textwrap.dedent(block))["channels"]["slack"] for block in blocks]


def slack_config(model_url: str, slack: FakeSlack, snippet: int = 0,
                 **options: Any) -> dict[str, Any]:
    """README's snippet, pointed at the fake (api_base) with short liveness bounds."""
    return {**model_config(model_url), "security": SECURITY,
            "channels": {"slack": {**readme_snippets()[snippet], "api_base": slack.api_base,
                                   "ping_interval": 0.5, "stale_after": 3, **options}}}


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(ack_timeout=1.0) as fake:
        yield fake


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("slack-home")


REPORT_SKILL = report_skill()


def started(gateway: GatewayProcess, slack: FakeSlack) -> GatewayProcess:
    """The gateway started with the environment README's snippet reads its tokens from."""
    os.environ.update(SLACK_BOT_TOKEN=slack.bot_token, SLACK_APP_TOKEN=slack.app_token)
    try:
        return gateway.start()
    finally:
        for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"):
            os.environ.pop(name)


@pytest.fixture(scope="module")
def gw(home: Path, model: FakeModelServer, slack: FakeSlack) -> Iterator[GatewayProcess]:
    (home / "skills").mkdir(parents=True, exist_ok=True)
    (home / "skills" / "report.py").write_text(REPORT_SKILL, encoding="utf-8")
    write_config(home, slack_config(model.url, slack))
    gateway = started(GatewayProcess(home, free_port()), slack)
    slack.wait_for_sockets(1)
    yield gateway
    gateway.stop()


@pytest.fixture(autouse=True)
def no_leftover_processes(gw: GatewayProcess) -> Iterator[None]:
    """The suite's check, minus the gateway the module shares and its children (the socket
    process); it is stopped, and must exit, when the module ends."""
    yield
    assert gw.proc is not None
    shared = {gw.proc.pid} | {p.pid for p in psutil.Process(gw.proc.pid).children(True)}
    left = [p for p in psutil.Process().children(recursive=True)
            if p.pid not in shared and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"test left processes running: {left}"


def channel(gw: GatewayProcess) -> dict[str, Any]:
    rows = httpx.get(f"{gw.url}/api/v1/channels", headers=gw.headers, timeout=10).json()
    return next(row for row in rows["channels"] if row["name"] == "slack")


def wait_state(gw: GatewayProcess, state: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (row := channel(gw))["state"] != state:
        assert time.monotonic() < deadline, f"still {row} after {timeout} s"
        time.sleep(0.05)
    return row


def answered(slack: FakeSlack, text: str, timeout: float = 20.0) -> Posted:
    """The one reply that echoes `text`."""
    if not slack.wait_for(lambda: any(text in p.text for p in slack.state.posted), timeout):
        raise AssertionError(f"no reply to {text!r}: {slack.posted}; {slack.state.calls[-8:]}")
    found = [p for p in slack.posted if text in p.text]
    assert len(found) == 1, found
    return found[0]


def test_a_direct_message_is_acknowledged_first_and_answered(
        gw: GatewayProcess, slack: FakeSlack, model: FakeModelServer) -> None:
    """The model takes longer than Slack waits for an ack: the envelope is acked anyway
    (after it is stored) and never delivered twice."""
    model.delay_first = 1.5
    envelope = slack.send_event(slack.message("hello from a DM"))
    reply = answered(slack, "hello from a DM")
    assert reply.channel == "D0ALICE" and reply.thread_ts is None  # a DM: no thread
    assert slack.acked(envelope)
    assert [d for d in slack.state.deliveries if d[0] == envelope.envelope_id] == [
        (envelope.envelope_id, 0)]
    row = channel(gw)
    assert row["state"] == "connected" and "@moltbot" in row["detail"], row
    stored = httpx.get(f"{gw.url}/api/v1/messages", params={"sender": ALICE},
                       headers=gw.headers, timeout=10).json()["messages"]
    assert stored and stored[0]["channel"] == "slack"


def test_a_channel_mention_is_answered_in_its_thread_once(slack: FakeSlack,
                                                          gw: GatewayProcess) -> None:
    slack.send_event(slack.message("people talking", channel="C0GENERAL",
                                   channel_type="channel"))
    mention = slack.message(f"<@{BOT_USER}> what is up", channel="C0GENERAL",
                            kind="app_mention")
    slack.send_event(mention)
    # the same message as the channel's `message` event: the same channel + ts
    slack.send_event({**mention, "type": "message", "channel_type": "channel"})
    reply = answered(slack, "what is up")
    assert reply.channel == "C0GENERAL" and reply.thread_ts == mention["ts"]
    assert f"<@{BOT_USER}>" not in reply.text
    in_thread = slack.message(f"<@{BOT_USER}> and in the thread", channel="C0GENERAL",
                              kind="app_mention", thread_ts=mention["ts"])
    slack.send_event(in_thread)
    assert answered(slack, "and in the thread").thread_ts == mention["ts"]
    assert not any("people talking" in p.text for p in slack.posted)


def test_bots_own_messages_and_edits_are_not_answered(slack: FakeSlack,
                                                      gw: GatewayProcess) -> None:
    before = len(slack.posted)
    slack.send_event(slack.message("echo: my own reply", user=BOT_USER, bot_id=BOT_ID))
    slack.send_event(slack.message("another bot", user="U0OTHER", bot_id="B0OTHER",
                                   subtype="bot_message"))
    slack.send_event({**slack.message("edited"), "subtype": "message_changed",
                      "message": {"text": "edited twice", "user": ALICE}})
    slack.send_event(slack.message("after the noise"))
    answered(slack, "after the noise")
    assert len(slack.posted) == before + 1


def test_a_redelivered_envelope_is_answered_once(slack: FakeSlack,
                                                 gw: GatewayProcess) -> None:
    envelope = slack.send_event(slack.message("only once please"))
    answered(slack, "only once please")
    slack.redeliver(envelope)
    assert slack.wait_for(lambda: slack.state.acks.count(envelope.envelope_id) == 2)
    slack.send_event(slack.message("the next one"))
    answered(slack, "the next one")
    assert len([p for p in slack.posted if "only once please" in p.text]) == 1


def test_a_dropped_socket_reconnects_and_nothing_is_lost(slack: FakeSlack,
                                                         gw: GatewayProcess) -> None:
    slack.send_event(slack.message("before the drop"))
    answered(slack, "before the drop")
    opened = slack.state.opened
    slack.drop_sockets()
    slack.send_event(slack.message("while it was away"))  # kept until a socket opens
    assert slack.wait_for(lambda: slack.state.opened > opened, timeout=30)
    answered(slack, "while it was away", timeout=30)
    # Slack asks for a new socket: the SDK opens it, the old one goes
    slack.send_disconnect()
    slack.send_event(slack.message("after the refresh"))
    answered(slack, "after the refresh", timeout=30)


def socket_process(gw: GatewayProcess) -> psutil.Process:
    assert gw.proc is not None
    deadline = time.monotonic() + 20
    while True:
        found = [p for p in psutil.Process(gw.proc.pid).children()
                 if "gateway.channels.slack_socket" in command_line(p)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, "no Slack socket process"
        time.sleep(0.05)


def test_a_silent_socket_goes_stale_and_is_restarted_once(slack: FakeSlack,
                                                          gw: GatewayProcess) -> None:
    """The socket process stops (no pong reaches the gateway): stale after stale_after, the
    process is replaced, and the channel works again."""
    frozen = socket_process(gw)
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        row = wait_state(gw, "stale")
        assert "channels.slack.stale_after" in row["detail"], row
        frozen.wait(20)  # the restart ends it (SIGKILL: a stopped process reads nothing)
    except BaseException:
        os.kill(frozen.pid, signal.SIGCONT)
        raise
    wait_state(gw, "connected")
    assert socket_process(gw).pid != frozen.pid
    slack.send_event(slack.message("after the restart"))
    answered(slack, "after the restart")


def test_an_outage_shows_retrying_with_the_key_to_fix(slack: FakeSlack,
                                                      gw: GatewayProcess) -> None:
    slack.refuse_sockets = "invalid_auth"
    slack.send_disconnect()
    row = wait_state(gw, "retrying")
    assert "channels.slack.app_token" in row["detail"], row
    slack.send_event(slack.message("during the outage"))
    slack.refuse_sockets = ""
    answered(slack, "during the outage", timeout=40)
    wait_state(gw, "connected")


def test_a_rate_limited_reply_is_sent_after_retry_after(slack: FakeSlack,
                                                        gw: GatewayProcess) -> None:
    slack.rate_limited = 1
    slack.send_event(slack.message("slow down"))
    answered(slack, "slow down", timeout=30)
    assert slack.state.calls.count("chat.postMessage") >= 2


def test_files_in_with_the_bot_token_and_out_into_the_thread(
        slack: FakeSlack, gw: GatewayProcess, home: Path) -> None:
    shared = slack.share_file("notes.txt", b"the file's words", "text/plain")
    slack.send_event(slack.message("read this", subtype="file_share", files=[shared]))
    answered(slack, "read this")
    inbox = list((home / "files" / "inbox").rglob("*notes.txt"))
    assert inbox and inbox[0].read_bytes() == b"the file's words"

    asked = slack.message(f"<@{BOT_USER}> /report weekly", channel="C0GENERAL",
                          kind="app_mention")
    slack.send_event(asked)
    assert answered(slack, "here it is").thread_ts == asked["ts"]
    assert slack.wait_for(lambda: slack.state.shared)
    [report] = slack.state.shared
    assert report.name == "report.txt" and report.data.startswith(b"report for")
    assert (report.channel, report.thread_ts) == ("C0GENERAL", asked["ts"])


def test_a_refused_reply_says_what_to_fix(slack: FakeSlack, gw: GatewayProcess) -> None:
    slack.not_in = {"C0PRIVATE"}
    slack.send_event(slack.message(f"<@{BOT_USER}> hello?", channel="C0PRIVATE",
                                   kind="app_mention"))
    deadline = time.monotonic() + 30
    while True:
        rows = httpx.get(f"{gw.url}/api/v1/outbox", params={"state": "failed",
                                                            "channel": "slack"},
                         headers=gw.headers, timeout=10).json()["outbound"]
        if any(r["chat"] == "C0PRIVATE" for r in rows):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)
    row = next(r for r in rows if r["chat"] == "C0PRIVATE")
    assert "/invite" in row["last_error"] and row["attempts"] == 1, row


def test_a_stranger_is_asked_for_a_pairing_code(slack: FakeSlack, gw: GatewayProcess) -> None:
    slack.send_event(slack.message("let me in", user=BOB, channel="D0BOB"))
    assert slack.wait_for(lambda: any(p.channel == "D0BOB" for p in slack.state.posted))
    reply = next(p for p in slack.posted if p.channel == "D0BOB")
    assert "code" in reply.text and "let me in" not in reply.text


def test_reloads_leave_exactly_one_socket(slack: FakeSlack, gw: GatewayProcess, home: Path,
                                          model: FakeModelServer) -> None:
    """Each reload ends the socket process (and its socket) before the next one starts: an
    old socket left open would take envelopes nobody answers."""
    for n in range(3):
        write_config(home, slack_config(model.url, slack, ping_interval=0.5 + (n + 1) % 2 / 4))
        deadline = time.monotonic() + 30
        while gw.log().count("channel slack reconfigured") < n + 1:
            assert time.monotonic() < deadline, gw.log()[-3000:]
            time.sleep(0.05)
    wait_state(gw, "connected")
    slack.send_event(slack.message("after the reloads"))
    answered(slack, "after the reloads")
    assert len(slack.state.sockets) == 1


def test_events_api_mode_after_a_reload(slack: FakeSlack, gw: GatewayProcess, home: Path,
                                        model: FakeModelServer) -> None:
    """Reloaded into Events API mode: the socket process and its socket are gone; Slack's
    signed requests are answered, a bad signature or an old timestamp refused, a retry
    answered once."""
    # README's events snippet; its secret comes from the keyring there, from the test here
    write_config(home, slack_config(model.url, slack, 1, signing_secret=slack.signing_secret))
    assert slack.wait_for(lambda: not slack.state.sockets, timeout=30)
    row = wait_state(gw, "connected")
    assert "Events API" in row["detail"], row
    url = f"{gw.url}/api/slack/events"
    check = slack.signed_post(url, {"type": "url_verification", "challenge": "c-123",
                                    "token": "x"})
    assert check.status_code == 200 and check.json()["challenge"] == "c-123"
    body = slack.callback(slack.message("over HTTP"))
    assert slack.signed_post(url, body, secret="wrong-secret").status_code == 401
    assert slack.signed_post(url, body, timestamp=int(time.time()) - 600).status_code == 401
    model.delay_first = 1.5
    assert slack.signed_post(url, body).status_code == 200
    assert not any("over HTTP" in p.text for p in slack.posted)  # acked before the answer
    assert slack.signed_post(url, body, retry_num=1).status_code == 200
    reply = answered(slack, "over HTTP")
    assert reply.channel == "D0ALICE"
    opened = slack.state.opened
    slack.signed_post(url, slack.callback(slack.message("still over HTTP")))
    answered(slack, "still over HTTP")
    assert slack.state.opened == opened  # no socket in events mode


def test_a_message_stored_when_the_gateway_died_is_answered_after_the_start(
        slack: FakeSlack, gw: GatewayProcess, model: FakeModelServer) -> None:
    """Slack got its ack (the message was stored) and will not send the message again: the
    gateway killed before answering answers it when it starts."""
    url = f"{gw.url}/api/slack/events"
    model.delay_first = 30
    assert slack.signed_post(url, slack.callback(slack.message("before the crash"))
                             ).status_code == 200
    assert gw.proc is not None
    gw.proc.kill()
    gw.proc.wait()
    started(gw, slack)
    answered(slack, "before the crash", timeout=40)
