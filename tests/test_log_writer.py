"""access.log off the event loop: a logging call only queues its record, a native thread
writes it (gateway.log and error.log at the call); rollover is decided on the line already
formatted; ordinary lines skip the redaction patterns.
Secrets are still masked (tests/test_logs.py, tests/test_console_redact.py and
tests/test_secrets_masked.py hold the redaction's own cases)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from gateway.observe.logs import EcsFormatter, RotatingFile
from gateway.observe.redact import _SECRETS

ROOT = Path(__file__).resolve().parent.parent

# As `gateway.server` runs: patched, logging from greenlets, the process ending normally.
CHILD = '''
from gevent import monkey; monkey.patch_all(queue=False)
import logging, sys
from pathlib import Path
import gevent
from gateway.observe.logs import ACCESS_LOGGER, setup_logging

setup_logging(Path(sys.argv[1]), "info", terminal=False, max_bytes=10**8, backups=1)
access, log = logging.getLogger(ACCESS_LOGGER), logging.getLogger("gateway.test")
counts = {"n": 0}

def client(c):
    for i in range(200):
        counts["n"] = i
        access.info("message %s-%d %s", c, i, "ok", extra={"ecs": {"moltbot.chat": str(c)}})
        gevent.sleep(0)

gevent.joinall([gevent.spawn(client, c) for c in range(5)])
args = {"state": "before"}
log.info("args are read when logged: %s", args)
args["state"] = "after"
try:
    raise ValueError("boom")
except ValueError:
    log.exception("it failed with Authorization: Bearer abcdefgh12345678")
log.debug("not at info")
'''


def test_lines_queued_from_greenlets_are_all_written_by_exit(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    access = [json.loads(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    assert len(access) == 1000
    for c in range(5):  # one client's lines in the order it logged them
        mine = [e["message"] for e in access if e["moltbot.chat"] == str(c)]
        assert mine == [f"message {c}-{i} ok" for i in range(200)]
    text = (tmp_path / "gateway.log").read_text()
    assert "{'state': 'before'}" in text and "not at info" not in text
    assert "ValueError: boom" in text and "abcdefgh12345678" not in text
    error = json.loads((tmp_path / "error.log").read_text().splitlines()[-1])
    assert "ValueError: boom" in error["error.stack_trace"]
    assert "Bearer ***" in error["message"]
    assert "message 0-0" not in text  # access lines go to access.log alone


class CountingFormatter(logging.Formatter):
    calls = 0

    def format(self, record: logging.LogRecord) -> str:
        CountingFormatter.calls += 1
        return super().format(record)


def test_rollover_is_decided_on_the_line_formatted_once(tmp_path: Path) -> None:
    handler = RotatingFile(tmp_path / "a.log", maxBytes=200, backupCount=3, encoding="utf-8")
    handler.setFormatter(CountingFormatter("%(message)s"))
    for i in range(12):
        handler.handle(logging.LogRecord("t", logging.INFO, __file__, 1, "line %02d " + "x" * 40,
                                         (i,), None))
    handler.close()
    assert CountingFormatter.calls == 12
    kept = [p.read_text() for p in sorted(tmp_path.glob("a.log*"), reverse=True)]
    lines = "".join(kept).splitlines()
    # 49 characters a line: four fit under 200, the fifth starts the next file
    assert [len(k.splitlines()) for k in kept] == [4, 4, 4]
    assert lines == [f"line {i:02d} " + "x" * 40 for i in range(12)]


def test_an_ordinary_access_line_runs_no_redaction_pattern() -> None:
    record = logging.LogRecord("moltbot.access", logging.INFO, __file__, 1, "message %s %s",
                               ("m1a24b97e931a0b825bd13", "ok"), None)
    record.ecs = {"event.action": "message", "event.outcome": "success",  # type: ignore[attr-defined]
                  "source.address": "127.0.0.1", "user.name": "dashboard",
                  "moltbot.channel": "http", "moltbot.chat": "c1", "moltbot.route": "chat"}
    line = EcsFormatter().format(record).lower()
    assert "@timestamp" in line
    assert [p.pattern for needs, p, _ in _SECRETS
            if any(all(n in line for n in group) for group in needs)] == []
