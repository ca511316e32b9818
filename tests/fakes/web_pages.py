"""A small website on 127.0.0.1 for the browser tool's tests: a page with a link and a list, a
form that posts and shows what it got, a redirect to another host, a page whose image comes
from another address, a download, and a page that never finishes loading.

`other` is the host name that redirects and sub-requests name (`localhost` by default: the
same server, reached under a name the tests do not allow), so nothing ever leaves the
machine. The hanging page holds its connection until `stop()`.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PAGES = {
    "/": """<!doctype html><title>Moltbot test site</title>
<h1>Welcome</h1><p>This page has a <a href="/form">form</a> and a list:</p>
<ul><li>first item</li><li>second item</li></ul>
<p style="display:none">hidden words</p>""",
    "/form": """<!doctype html><title>Order form</title>
<h1>Order</h1>
<form id="order" method="post" action="/submitted">
<label>Name <input name="name" id="name"></label>
<select name="size" id="size"><option>small</option><option>large</option></select>
<button type="submit" id="send">Send</button></form>""",
    "/slow-text": """<!doctype html><title>Later</title><div id="late"></div>
<script>setTimeout(() => { document.getElementById("late").textContent = "arrived"; }, 50);
</script>""",
}


class Site:
    """The server; `url(path)` on 127.0.0.1, `other_url(path)` under the other name."""

    def __init__(self, other: str = "localhost") -> None:
        self.other = other
        self.release = threading.Event()
        self.hits: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                site.hits.append(f"{self.headers.get('Host')}{self.path}")
                path = urlsplit(self.path).path
                if path in PAGES:
                    self.send_page(PAGES[path])
                elif path == "/redirect-out":
                    self.send_response(302)
                    self.send_header("Location", site.other_url("/"))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == "/private-image":
                    self.send_page(f'<!doctype html><title>Image</title><p>picture:</p>'
                                   f'<img src="{site.other_url("/pixel.png")}" alt="pixel">')
                elif path == "/big-download":
                    self.send_download(3 * 1024 * 1024)
                elif path == "/small-download":
                    self.send_download(2000)
                elif path == "/never":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.end_headers()
                    self.wfile.write(b"<!doctype html><title>Never</title><p>loading")
                    self.wfile.flush()
                    site.release.wait(60)
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                got = ", ".join(f"{k}={v[0]}" for k, v in sorted(form.items()))
                self.send_page(f"<!doctype html><title>Thanks</title>"
                               f"<p id='got'>Received: {html.escape(got)}</p>")

            def send_page(self, text: str) -> None:
                body = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def send_download(self, size: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Disposition", 'attachment; filename="data.bin"')
                self.send_header("Content-Length", str(size))
                self.end_headers()
                chunk = b"x" * 65536
                left = size
                try:
                    while left > 0:
                        self.wfile.write(chunk[:left])
                        left -= len(chunk)
                except OSError:
                    pass  # the browser cancelled it

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def other_url(self, path: str = "/") -> str:
        return f"http://{self.other}:{self.port}{path}"

    def start(self) -> Site:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def running() -> Iterator[Site]:
    """A started site, stopped after (a fixture's body: `yield from running()`)."""
    site = Site().start()
    try:
        yield site
    finally:
        site.stop()
