"""Where the Slack channel's SDK runs, measured (the thread rule in ARCHITECTURE.md): the
sync Socket Mode client deadlocks gevent's loop in the gateway's process, so Socket Mode runs
in a child; the sync WebClient the replies use keeps the loop turning."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.fake_slack import FakeSlack
from tests.loopprobe import BLOCK_BOUND, run_probe


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def test_the_sync_socket_mode_client_deadlocks_the_patched_loop(slack: FakeSlack) -> None:
    slack.send_event(slack.message("waiting for a socket"))
    outcome = run_probe("slack_builtin", {"app_token": slack.app_token,
                                          "api_base": slack.api_base}, timeout=6)
    assert outcome.verdict == "deadlock", (outcome, outcome.output)
    assert slack.state.opened >= 1  # it got as far as the socket: the wait is what froze


def test_the_web_client_keeps_the_loop_turning(slack: FakeSlack) -> None:
    outcome = run_probe("slack_web", {"api_base": slack.api_base,
                                      "bot_token": slack.bot_token})
    assert outcome.arrived, (outcome.error, outcome.output)
    assert outcome.largest_gap_ms is not None
    assert outcome.largest_gap_ms < BLOCK_BOUND * 1000, outcome
    print(f"slack_web: largest loop gap {outcome.largest_gap_ms} ms over {outcome.calls} calls")
