"""Each library the gateway uses at run time, under `patch_all(queue=False)` (issue 13): its
results arrive and the loop keeps turning while it works (no gap of `BLOCK_BOUND` or more
between 10 ms ticks; a deadlock is a child killed at its time limit and fails).

The probes live in `tests/loopprobe.py` (shared with `bench/run.py loop-libraries`, which
prints the figures); each runs in a fresh patched child against real services, slowed where
the point is a wait (Mosquitto for paho-mqtt: installers/test.sh installs it).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.core.store import lock_for_write
from tests.conftest import free_port
from tests.fakes.mail_server import MailServer
from tests.loopprobe import (
    BLOCK_BOUND,
    Outcome,
    has_secret_service,
    keyring_session,
    mosquitto,
    run_probe,
    slow_services,
)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any],
                                                                          MailServer]]:
    with slow_services(tmp_path_factory.mktemp("services")) as found:
        yield found


def assert_loop_kept_turning(outcome: Outcome) -> None:
    assert outcome.arrived, (f"{outcome.name}: {outcome.verdict}, no results: "
                             f"{outcome.error}\n{outcome.output}")
    assert outcome.largest_gap_ms is not None
    assert outcome.largest_gap_ms < BLOCK_BOUND * 1000, (
        f"{outcome.name} stopped the loop for {outcome.largest_gap_ms:.0f} ms during "
        f"{outcome.operation}")


@pytest.mark.skipif(not has_secret_service(),
                    reason="needs a real Secret Service: apt-get install gnome-keyring dbus "
                           "(installers/test.sh installs them)")
def test_keyring_waits_for_a_paused_secret_service_cooperatively(tmp_path: Path) -> None:
    prefix, env = keyring_session(tmp_path)
    assert_loop_kept_turning(run_probe("keyring", prefix=prefix, env=env))


def test_smtp_alert_mail_to_a_slow_server(services: tuple[dict[str, Any], MailServer]) -> None:
    args, mail = services
    before = len(mail.envelopes)
    outcome = run_probe("smtp", args["smtp"])
    assert_loop_kept_turning(outcome)
    assert len(mail.wait_for(before + outcome.calls)) == before + outcome.calls


def test_ollama_client_to_a_slow_model(services: tuple[dict[str, Any], MailServer]) -> None:
    assert_loop_kept_turning(run_probe("ollama", services[0]["ollama"]))


@pytest.mark.parametrize("locked", [False, True], ids=["uncontended", "locked-by-another"])
def test_store_writes_while_another_process_holds_the_write_lock(tmp_path: Path,
                                                                 locked: bool) -> None:
    """Before the store waited cooperatively, SQLite's busy handler slept in C and the loop
    stood still for the whole 2 s the other process held the lock."""
    outcome = run_probe("sqlite", {"dir": str(tmp_path), "locked": locked})
    assert_loop_kept_turning(outcome)
    if locked:
        assert outcome.seconds >= 1.0  # the writes really did wait for the other process


@pytest.mark.parametrize("name", ["prometheus_update", "prometheus_collect"])
def test_prometheus_multiprocess(tmp_path: Path, name: str) -> None:
    assert_loop_kept_turning(run_probe(name, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}))


def test_limits_memory_storage_and_its_expiry_timer() -> None:
    outcome = run_probe("limits")
    assert_loop_kept_turning(outcome)
    assert "threading.Timer started" in outcome.note


def test_psutil_reads_of_the_process_tree() -> None:
    assert_loop_kept_turning(run_probe("psutil"))


def test_jieba_first_load_on_the_thread_pool() -> None:
    """Where a knowledge reload runs it today (`reload.off_loop`)."""
    assert_loop_kept_turning(run_probe("jieba", {"pool": True}))


@pytest.mark.parametrize("name", ["paho", "mqtt_link"])
def test_paho_mqtt_and_the_channels_link_against_mosquitto(name: str) -> None:
    """paho's network loop is a greenlet here (`loop_start`'s thread, patched): its waits
    are patched selects and sockets. `mqtt_link` is the channel's own use of it: a backlog
    arriving at once, acknowledged by hand from greenlets, and a refused broker retried."""
    with mosquitto(free_port()) as port:
        outcome = run_probe(name, {"port": port})
    assert_loop_kept_turning(outcome)
    if name == "mqtt_link":
        assert "cannot reach" in outcome.note


def test_a_deadlocked_loop_is_reported_as_one() -> None:
    """The harness itself: the C queue wait of watchdog 7.1.1 never returns, and the child is
    killed at its time limit instead of hanging the suite."""
    outcome = run_probe("deadlock", timeout=5)
    assert outcome.verdict == "deadlock" and not outcome.arrived


HOLD_UNTIL_STDIN_CLOSES = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
    "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read(); "
    "c.execute('COMMIT')")


def test_a_write_lock_held_too_long_fails_after_the_wait(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_UNTIL_STDIN_CLOSES, path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        conn.execute("PRAGMA busy_timeout=0")
        with pytest.raises(Exception, match="database is locked"):
            lock_for_write(conn, wait=0.2)
        assert holder.stdin is not None
        holder.stdin.close()  # the other process commits and lets go
        assert holder.wait(10) == 0
        lock_for_write(conn, wait=5)
        conn.execute("COMMIT")
    finally:
        conn.close()
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for pipe in (holder.stdin, holder.stdout):
            if pipe is not None:
                pipe.close()
