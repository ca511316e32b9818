"""The file watcher: watchdog in a child process, never on the gateway's event loop.

Under `patch_all(queue=False)` with watchdog in the gateway's own process, 7.1.1 froze the
loop on every start (its dispatcher waits on a C-level queue inside a greenlet). The probe below
runs the real `FileWatcher` under the same patching as the gateway, with a loop ticking every
10 ms, for each watchdog release that `installers/test.sh` installs side by side
(`.venv/watchdog-matrix/<version>`), and checks that every change arrives while the loop never
stops ticking. The gateway tests then check what users see: a skill dropped in goes live, a
killed watcher comes back, and the watcher never outlives its gateway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, GatewayProcess, command_line, free_port, model_config, write_config
from tests.locks import watchdog_matrix

FILES = 5

PROBE = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all(queue=False)  # as gateway/server/main.py does

    import json, sys, time
    from pathlib import Path
    import gevent
    from gateway.live.watcher import FileWatcher

    folder = Path(sys.argv[1])
    seen, gaps = set(), [0.0]

    def tick():
        last = time.perf_counter()
        while True:
            gevent.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last - 0.01)
            last = now

    gevent.spawn(tick)
    watcher = FileWatcher([(folder, True)], on_change=lambda p: seen.add(p.name),
                          on_restart=lambda: None)
    watcher.start()
    for i in range(FILES):
        (folder / f"f{i}.md").write_text("x")
        gevent.sleep(0.05)
    deadline = time.monotonic() + 10
    while len({n for n in seen if n.startswith("f")}) < FILES and time.monotonic() < deadline:
        gevent.sleep(0.05)
    watcher.stop()
    print(json.dumps({"seen": sorted(seen), "max_gap": max(gaps), "status": watcher.status}))
""").replace("FILES", str(FILES))


def watchdog_version(path: Path) -> str:
    out = subprocess.run([sys.executable, "-c", "import watchdog.version as v; "
                          "print(v.VERSION_STRING)"], env={**os.environ, "PYTHONPATH": str(path)},
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("version", ["6.0.0", "7.1.0", "7.1.1"])
def test_every_change_arrives_and_the_loop_keeps_ticking(version: str, tmp_path: Path) -> None:
    path = watchdog_matrix()[version]
    assert watchdog_version(path) == version
    folder = tmp_path / "watched"
    folder.mkdir()
    # The child (gateway.live.watcher_child) imports watchdog from PYTHONPATH first; the gateway's
    # own packages come from the installed checkout as usual.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", PROBE, str(folder)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert {f"f{i}.md" for i in range(FILES)} <= set(found["seen"]), found
    assert found["max_gap"] < 0.5, f"the loop stopped for {found['max_gap']:.2f}s"


def watcher_children(gw: GatewayProcess) -> list[psutil.Process]:
    assert gw.proc is not None
    return [p for p in psutil.Process(gw.proc.pid).children()
            if "gateway.live.watcher_child" in command_line(p)]


SKILL = """
from moltbot_sdk import context

@context.handle(intent="{name}", keywords=["{name}"])
def handle(msg):
    return {{"reply": "{name} is live"}}
"""


def ask_until(gw: GatewayProcess, text: str, want: str, deadline_s: float = 15) -> str:
    deadline = time.monotonic() + deadline_s
    reply = ""
    while time.monotonic() < deadline:
        reply = gw.post(text).json().get("reply", "")
        if want in reply:
            return reply
        time.sleep(0.1)
    return reply


def test_a_killed_watcher_is_started_again_and_catches_up(home: Path, fake_model) -> None:
    write_config(home, model_config(fake_model.url))
    gw = GatewayProcess(home, free_port()).start()
    try:
        (first,) = watcher_children(gw)
        first.kill()
        # dropped while no watcher runs: the restarted one's full reload must still find it
        (home / "skills" / "while_down.py").write_text(SKILL.format(name="whiledown"))
        assert "whiledown is live" in ask_until(gw, "whiledown", "live")
        (second,) = watcher_children(gw)
        assert second.pid != first.pid
        (home / "skills" / "after.py").write_text(SKILL.format(name="afterward"))
        assert "afterward is live" in ask_until(gw, "afterward", "live")
        assert "the file watcher stopped" in gw.log()
    finally:
        gw.stop()


def test_the_watcher_never_outlives_its_gateway(home: Path, fake_model) -> None:
    write_config(home, model_config(fake_model.url))
    gw = GatewayProcess(home, free_port()).start()
    (child,) = watcher_children(gw)
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGKILL)  # no chance to clean up: the closed pipe ends it
    gw.proc.wait()
    child.wait(timeout=10)
    assert not child.is_running()
