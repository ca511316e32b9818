"""An in-house chat platform's side of `enterprise_im`: the `reply_url` it exposes.

Records each reply the gateway POSTs (body and Authorization header); `fail_times` answers the
next N with HTTP 503, to see the gateway try again.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeImPlatform:
    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self.fail_times = 0
        self.arrived = threading.Condition()
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with platform.arrived:
                    failing = platform.fail_times > 0
                    platform.fail_times -= 1 if failing else 0
                    if not failing:
                        platform.replies.append({"body": body, "authorization":
                                                 self.headers.get("Authorization")})
                        platform.arrived.notify_all()
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/im/reply"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> FakeImPlatform:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.replies) >= count, timeout):
                raise AssertionError(f"{len(self.replies)} replies arrived, wanted {count}")
            return list(self.replies)
