"""A blocked event loop is found, said with its stack, counted, and shown where people look.

The fault (`MOLTBOT_TEST_FAULTS`, `gateway/server/faults.py`) makes the real gateway's loop call the
unpatched `time.sleep`, as a library stuck in C would.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from gateway.common.workspace import Workspace
from gateway.observe.loopwatch import Block, is_starved, read_blocks, summarize, thread_state
from tests.conftest import GatewayProcess, free_port, model_config, run_cli, write_config

pytestmark = pytest.mark.blocks_loop


def wait_for(predicate, deadline_s: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_block_is_reported_once_with_its_stack_counted_and_shown(
        home: Path, fake_model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOLTBOT_TEST_FAULTS", "block-loop=1.2")
    write_config(home, model_config(fake_model.url))
    gw = GatewayProcess(home, free_port()).start()
    try:
        assert gw.proc is not None
        # after the start's second half: what it costs the loop on a busy machine is what
        # every other test's `no_blocked_loop` judges; here only the fault's block is counted
        wait_for(lambda: "started: skills, knowledge and channels ready" in gw.log())
        os.kill(gw.proc.pid, signal.SIGUSR2)
        report = Workspace(home).loop_report_path(gw.port)
        wait_for(lambda: any(b.seconds for b in read_blocks(report, gw.proc.pid)))
        (block,) = read_blocks(report, gw.proc.pid)
        assert "faults.py" in block.stack and "_blocking_sleep" in block.stack
        assert 1.0 < block.seconds < 10  # type: ignore[operator]
        log = gw.log()
        assert log.count("the event loop was blocked for") == 1
        assert "_blocking_sleep" in log.split("the event loop was blocked for")[1]
        metrics = httpx.get(f"{gw.url}/metrics", timeout=5).text
        assert "moltbot_event_loop_blocked_total 1.0" in metrics

        port = str(gw.port)
        status = run_cli(home, "gateway", "status", "--port", port)
        assert status.returncode == 0, status.stdout
        assert "event loop blocked 1 time(s)" in status.stdout
        assert "_blocking_sleep" in status.stdout
        write_config(home, {**model_config(fake_model.url), "gateway": {"port": gw.port}})
        doctor = run_cli(home, "doctor")
        assert "event loop blocked 1 time(s)" in doctor.stdout, doctor.stdout
        assert "report the stack" in doctor.stdout
    finally:
        gw.stop()


def test_a_thread_holding_pythons_lock_is_reported_from_where_the_cpu_went(
        home: Path, fake_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """gevent's monitor needs Python's lock to look at the loop, so while another thread holds
    it (jieba's `marshal.load` on the thread pool did, at every start) nothing is caught with
    a stack; the heartbeat names it from the CPU the other threads used meanwhile."""
    monkeypatch.setenv("MOLTBOT_TEST_FAULTS", "hold-lock=1.2")
    write_config(home, model_config(fake_model.url))
    gw = GatewayProcess(home, free_port()).start()
    try:
        assert gw.proc is not None
        os.kill(gw.proc.pid, signal.SIGUSR1)
        report = Workspace(home).loop_report_path(gw.port)

        def held() -> list[Block]:
            return [b for b in read_blocks(report, gw.proc.pid) if b.greenlet == "another thread"]

        wait_for(lambda: bool(held()))
        (block,) = held()
        assert "held Python's lock" in block.stack and not block.starved
        # "about 1.2 s": sized from a CPU sample, and a machine this loaded times it loosely
        assert 0.6 < block.seconds < 10  # type: ignore[operator]
        assert "another thread of the gateway used" in gw.log()
        status = run_cli(home, "gateway", "status", "--port", str(gw.port))
        assert "in another thread" in status.stdout and "held Python's lock" in status.stdout
    finally:
        gw.stop()


def test_a_start_that_never_answers_says_where_it_hangs_and_frees_the_port(
        home: Path, fake_model) -> None:
    write_config(home, model_config(fake_model.url))
    port = free_port()
    # 8 s: on a busy machine the imports alone take 3 s before the fault blocks the start
    result = run_cli(home, "gateway", "start", "--port", str(port), "--wait", "8",
                     env={"MOLTBOT_TEST_FAULTS": "block-start=60"})
    assert result.returncode == 1
    assert "did not answer" in result.stderr and "was stopped" in result.stderr
    assert "event loop blocked 1 time(s)" in result.stderr
    assert "had not run again" in result.stderr
    assert "_blocking_sleep" in result.stderr  # the stack names where it hangs
    assert run_cli(home, "gateway", "status", "--port", str(port)).returncode == 3


def test_a_first_chinese_question_does_not_load_jieba_on_the_loop(gateway) -> None:
    """The example knowledge is English: without the load at start, the first Han text in a
    message loaded jieba's dictionary on the loop (0.9-1.5 s, bench/run.py loop-libraries)."""
    assert gateway.post("操作系统是什么？").status_code == 200
    assert gateway.proc is not None
    blocks = read_blocks(Workspace(gateway.home).loop_report_path(gateway.port),
                         gateway.proc.pid)
    assert not [b for b in blocks if "jieba" in b.stack], [b.describe() for b in blocks]


def test_a_loop_waiting_or_running_in_c_is_a_block_and_one_left_without_cpu_is_starved(
) -> None:
    """The kernel's view of a real thread: one waiting in C is `S`, one running is `R` with
    its CPU time growing with the wall clock; only runnable without CPU is starvation."""
    done = threading.Event()
    ids: dict[str, int] = {}

    def wait() -> None:
        ids["waiting"] = threading.get_native_id()
        done.wait()

    def spin() -> None:
        ids["running"] = threading.get_native_id()
        ids["clock"] = time.pthread_getcpuclockid(threading.get_ident())
        while not done.is_set():
            sum(range(1000))

    threads = [threading.Thread(target=t) for t in (wait, spin)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(ids) == 3)
        wait_for(lambda: thread_state(ids["waiting"]) == "S")
        cpu = time.clock_gettime(ids["clock"])
        time.sleep(0.3)
        used = time.clock_gettime(ids["clock"]) - cpu
        assert not is_starved("S", 0.0, 1.0)  # waiting in C: a block, whatever the CPU
        # the spinning thread had its share of 2 cores (unless the machine is very busy)
        assert thread_state(ids["running"]) in ("R", "S")  # S: waiting for the GIL
        assert used > 0
    finally:
        done.set()
        for t in threads:
            t.join()
    assert is_starved("R", 0.01, 1.0) and not is_starved("R", 0.5, 1.0)
    assert thread_state(2**22 + 12345) is None  # no such thread


def test_status_counts_starvation_apart_from_blocks() -> None:
    blocked = Block(1, 1, time.time(), "main", "  File x\n", 1.5)
    starved = Block(1, 2, time.time(), "main", "  File y\n", 0.8, starved=True)
    assert summarize([starved]) == \
        "event loop got almost no CPU 1 time(s) (the machine was busy)"
    both = summarize([blocked, starved])
    assert both.startswith("event loop blocked 1 time(s), longest 1.50s")
    assert both.endswith("\nIt also got almost no CPU 1 time(s) (the machine was busy).")
