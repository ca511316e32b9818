"""Fair queues: a skill host given back goes to the call that has waited longest.

Runs in a child process patched as `gateway.server` patches itself, with real skill hosts:
under gevent the order in which greenlets are served is deterministic, so the test checks that
order, not timings. Three clients each send their next call as soon as the last is answered
through a pool of one host; with a plain condition the client that just gave the host back
took it again before the woken waiter ran (A A A B B B C C C, and under load some waited for
seconds); first come, first served gives A B C A B C A B C.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SKILL = '''\
import time
from moltbot_sdk import Skill, context

class Fair(Skill):
    @context.handle(intent="ping")
    def ping(self, msg):
        return "pong " + msg["text"]

    @context.handle(intent="hold")
    def hold(self, msg):
        time.sleep(float(msg["text"]))
        return "held"
'''

CHILD = '''
from gevent import monkey; monkey.patch_all(queue=False)
import json, sys
from pathlib import Path
import gevent
from gateway.skills.errors import SkillError
from gateway.skills.hostpool import SkillHostPool

pool = SkillHostPool(Path(sys.argv[1]), 1, {})
pool.load({"skills/fair.py": sys.argv[2]})
order, outcome = [], {}

def client(name):
    for i in range(3):
        reply = pool.call("skills/fair.py", "ping", {"text": name}, 10, pool.generation)
        order.append(reply["reply"].split()[-1])

gevent.joinall([gevent.spawn(client, name) for name in "ABC"], raise_error=True)

def impatient():
    try:
        pool.call("skills/fair.py", "ping", {"text": "late"}, 0.05, pool.generation)
        outcome["impatient"] = "served"
    except SkillError as e:
        outcome["impatient"] = str(e)

holder = gevent.spawn(pool.call, "skills/fair.py", "hold", {"text": "1"}, 10, pool.generation)
gevent.sleep(0)  # the holder has the host
gevent.spawn(impatient).join()
holder.join()
after = pool.call("skills/fair.py", "ping", {"text": "next"}, 10, pool.generation)
outcome["after"] = after["reply"]
pool.close()
print(json.dumps({"order": order, **outcome}))
'''


def run_child(workspace: Path) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(workspace), SKILL], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return dict(json.loads(out.stdout.splitlines()[-1]))


def test_skill_hosts_serve_waiting_calls_first_come_first_served(tmp_path: Path) -> None:
    result = run_child(tmp_path)
    # each client's next call queues behind the ones already waiting
    assert result["order"] == list("ABCABCABC")
    # a call that gave up waiting leaves the line: the host is not handed to it afterwards
    assert "every skill worker is busy" in str(result["impatient"])
    assert result["after"] == "pong next"
