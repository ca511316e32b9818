"""What recording the model's input costs a message, in microseconds: `record_input` (masking
and bounding the messages list, once per model call) and the extra row `finish_message`
writes in its one transaction (SQLite in WAL mode on a temporary file, as the gateway runs).

Run: python bench/bench_console_record.py [messages]. Prints numbers, asserts nothing.
The messages list is a realistic one: a system prompt, a grounding passage and 6 history
turns (about 3 KB), and a long one (about 40 KB, cut to 16 KB).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.core.chat import record_input  # noqa: E402
from gateway.core.message import Message, ModelInput, Span, Trace  # noqa: E402
from gateway.core.store import Store  # noqa: E402

GATEWAY_OVERHEAD_US = 2500.0
RUNS = 3


PROSE = ("How do I reset the router when its admin page at http://192.168.1.1 does not "
         "load? The lights keep blinking after the usual steps. ")


def prose(chars: int) -> str:
    return (PROSE * (chars // len(PROSE) + 1))[:chars]


def conversation(turn_chars: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You are Moltbot, a private assistant. " * 4},
                {"role": "system", "content": "Passage from knowledge/faq.md: " + prose(600)}]
    for i in range(6):
        messages.append({"role": "user", "content": f"question {i} " + prose(turn_chars)})
        messages.append({"role": "assistant", "content": f"answer {i} " + prose(turn_chars)})
    messages.append({"role": "user", "content": "and my api_key=sk-1234567890 is this"})
    return messages


def time_record(messages: list[dict[str, str]], n: int) -> float:
    best = float("inf")
    for _ in range(RUNS):
        began = time.perf_counter()
        for _ in range(n):
            record_input(Trace("m1"), "llama2", messages)
        best = min(best, (time.perf_counter() - began) / n * 1e6)
    return best


def time_finish(n: int, with_input: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        spans = [Span("guard", 0.0, 0.1, "ok"), Span("model", 1.0, 30.0, "ok", "llama2")]
        given = ModelInput("llama2", "[" + '{"role": "user", "content": "hi"},' * 80 + "{}]",
                           120, 30)
        msgs = [Message(channel="http", sender="s", chat="c", text="hi") for _ in range(n)]
        for m in msgs:
            store.add_message(m, None)
        began = time.perf_counter()
        for m in msgs:
            store.finish_message(m.id, session_id=None, reply="ok", error=None, route="chat",
                                 trace=spans, model_input=given if with_input else None,
                                 channel="http")
        elapsed = (time.perf_counter() - began) / n * 1e6
        store.close()
    return elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    short = time_record(conversation(200), n)
    long = time_record(conversation(3000), max(1, n // 4))
    plain = min(time_finish(n // 4, False) for _ in range(RUNS))
    recorded = min(time_finish(n // 4, True) for _ in range(RUNS))
    print(f"record_input, ~3 KB of messages:       {short:8.1f} us per model call")
    print(f"record_input, ~40 KB cut to 16 KB:      {long:8.1f} us per model call")
    print(f"finish_message without a model input:  {plain:8.1f} us")
    share = 100 * (recorded - plain + short) / GATEWAY_OVERHEAD_US
    print(f"finish_message with one (same commit): {recorded:8.1f} us "
          f"(+{recorded - plain:.1f} us; with the short input's record_input "
          f"{share:.1f} % of the gateway's ~{GATEWAY_OVERHEAD_US / 1000:.1f} ms overhead)")


if __name__ == "__main__":
    main()
