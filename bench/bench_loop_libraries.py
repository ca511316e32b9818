"""Which libraries keep the gateway's gevent loop turning while they work (issue 13).

Run: python bench/bench_loop_libraries.py [name ...]. Prints a table, asserts nothing; about
30 s. Each row is one probe of `tests/loopprobe.py`: a fresh child process that runs
`monkey.patch_all(queue=False)` first, as the gateway does, then uses one library as the
gateway code uses it while a ticker greenlet records the largest interval between its 10 ms
ticks. The services are real and slow where the point is a wait (see that module). paho-mqtt
is measured only when it is installed (MQTT lands later; it is no dependency yet).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402
from tests.fakes.fake_model import FakeModelServer  # noqa: E402
from tests.fakes.mail_server import MailServer  # noqa: E402
from tests.loopprobe import (  # noqa: E402
    STALL,
    Outcome,
    has_secret_service,
    keyring_session,
    mosquitto,
    run_probe,
)


@contextlib.contextmanager
def services(tmp: Path) -> Iterator[dict[str, Any]]:
    """The slow SMTP server and model server every run shares, with their addresses."""
    mail = MailServer(tls=True, users={"bot": "pw"}, delay=STALL)
    model = FakeModelServer()
    with mail, model:
        model.delay_first = STALL
        yield {"smtp": {"port": mail.port, "user": "bot", "password": "pw",
                        "cafile": mail.write_ca(str(tmp / "ca.pem"))},
               "model": model.url}


def measure(names: list[str]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as folder, services(Path(folder)) as svc:
        tmp = Path(folder)

        def want(name: str) -> bool:
            return not names or name in names

        if want("keyring"):
            if has_secret_service():
                (tmp / "user").mkdir()
                prefix, env = keyring_session(tmp / "user")
                outcomes.append(run_probe("keyring", prefix=prefix, env=env))
            else:
                print("keyring: skipped (needs gnome-keyring and dbus-run-session)")
        if want("smtp"):
            outcomes.append(run_probe("smtp", svc["smtp"]))
        if want("sqlite"):
            for locked in (False, True):
                (tmp / f"db{locked}").mkdir()
                outcomes.append(run_probe("sqlite", {"dir": str(tmp / f"db{locked}"),
                                                     "locked": locked}))
        if want("ollama"):
            outcomes.append(run_probe("ollama", {"url": svc["model"]}))
        for name in ("prometheus_update", "prometheus_collect"):
            if want(name):
                (tmp / name).mkdir()
                outcomes.append(run_probe(name, env={
                    "PROMETHEUS_MULTIPROC_DIR": str(tmp / name)}))
        if want("limits"):
            outcomes.append(run_probe("limits"))
        if want("jieba"):
            for pool in (False, True):
                outcomes.append(run_probe("jieba", {"pool": pool}))
        if want("psutil"):
            outcomes.append(run_probe("psutil"))
        if want("paho"):
            try:
                import paho.mqtt  # noqa: F401
            except ImportError:
                print("paho: skipped (pip install paho-mqtt to measure it)")
            else:
                with mosquitto(free_port()) as port:
                    outcomes.append(run_probe("paho", {"port": port}))
    return outcomes


def main() -> None:
    outcomes = measure(sys.argv[1:])
    print("| library | version | operation | calls | results arrived | largest loop gap (ms) "
          "| took (s) | verdict | note |")
    print("|---|---|---|--:|---|--:|--:|---|---|")
    for o in outcomes:
        gap = "-" if o.largest_gap_ms is None else f"{o.largest_gap_ms:.1f}"
        print(f"| {o.library or o.name} | {o.version} | {o.operation} | {o.calls} | "
              f"{'yes' if o.arrived else 'no'} | {gap} | {o.seconds:.2f} | {o.verdict} | "
              f"{o.error or o.note} |")
    for o in outcomes:
        if o.error:
            print(f"\n{o.name}: {o.error}\n{o.output}")


if __name__ == "__main__":
    main()
