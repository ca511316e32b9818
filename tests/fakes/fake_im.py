"""An in-house chat platform's side of `enterprise_im`: the `reply_url` it exposes.

Records each message the gateway POSTs (body, Authorization and Idempotency-Key headers) and,
as a real platform would, takes each idempotency key once: a repeat is counted in
`duplicates`, not taken again. What it answers can be scripted:
- `fail_times`: answer the next N with HTTP 503;
- `answers`: the next answers, in order, as (status, headers), e.g. `(429, {"Retry-After":
  "1"})`; a 4xx or 5xx is not taken;
- `hold_next`: take the next N but answer nothing until `release()` (a gateway killed
  meanwhile never learns they arrived).
Every request, taken or not, is in `attempts`.
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeImPlatform:
    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []
        self.duplicates = 0
        self.fail_times = 0
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.hold_next = 0
        self.released = threading.Event()
        self.arrived = threading.Condition()
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, headers, held = platform._take(body, self.headers)
                if held:
                    platform.released.wait(60)
                with contextlib.suppress(OSError):  # a held caller may be gone
                    self.send_response(status)
                    for name, value in {**headers, "Content-Length": "2"}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/im/reply"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _take(self, body: dict[str, Any], headers: Any) -> tuple[int, dict[str, str], bool]:
        key = headers.get("Idempotency-Key")
        with self.arrived:
            if self.fail_times > 0:
                self.fail_times -= 1
                status, answer_headers = 503, {}
            elif self.answers:
                status, answer_headers = self.answers.pop(0)
            else:
                status, answer_headers = 200, {}
            held = status < 400 and self.hold_next > 0
            self.hold_next -= 1 if held else 0
            self.attempts.append({"body": body, "idempotency_key": key, "status": status})
            if status < 400:
                if key is not None and any(r["idempotency_key"] == key for r in self.replies):
                    self.duplicates += 1
                else:
                    self.replies.append({"body": body, "idempotency_key": key,
                                         "authorization": headers.get("Authorization")})
            self.arrived.notify_all()
        return status, answer_headers, held

    def start(self) -> FakeImPlatform:
        self.thread.start()
        return self

    def release(self) -> None:
        self.released.set()

    def stop(self) -> None:
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The first `count` messages taken, once they are there."""
        return self._wait(lambda: self.replies, count, timeout)

    def wait_for_attempts(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The first `count` requests, taken or not, once they are there."""
        return self._wait(lambda: self.attempts, count, timeout)

    def _wait(self, seen: Any, count: int, timeout: float) -> list[dict[str, Any]]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(seen()) >= count, timeout):
                raise AssertionError(f"{len(seen())} arrived, wanted {count}: "
                                     f"{self.attempts}")
            return list(seen())
