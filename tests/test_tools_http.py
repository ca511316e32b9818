"""HttpTool against a real local server: allowlist, redirects, size cap, time limit."""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.tools.base import ToolError, ToolRefused
from gateway.tools.http import HttpTool

BIG = 2 * 1024 * 1024


@dataclass
class Server:
    port: int
    release: threading.Event  # set at teardown so slow handlers return at once

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


class Handler(BaseHTTPRequestHandler):
    release: threading.Event
    port: int

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, status: int, location: str) -> None:
        self.send(status, b"", {"Location": location})

    def do_GET(self) -> None:
        # The client may stop reading on purpose (size cap, time-out).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.route()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/see-other":
            self.redirect(303, "/headers")
            return
        echo = {"body": body.decode(), "content-type": self.headers.get("Content-Type")}
        self.send(200, json.dumps(echo).encode(), {"Content-Type": "application/json"})

    def route(self) -> None:
        port = self.port
        if self.path == "/ok":
            self.send(200, b"hello")
        elif self.path == "/headers":
            self.send(200, json.dumps({k.lower(): v for k, v in self.headers.items()}).encode())
        elif self.path == "/big":
            self.send(200, b"a" * BIG)
        elif self.path == "/gzip-small":
            self.send(200, gzip.compress("grüße".encode()), {"Content-Encoding": "gzip"})
        elif self.path == "/gzip-bomb":
            self.send(200, gzip.compress(b"a" * 20_000_000), {"Content-Encoding": "gzip"})
        elif self.path == "/slow":
            self.release.wait(10)
            self.send(200, b"late")
        elif self.path == "/drip":
            self.send_response(200)
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b".")
                self.wfile.flush()
                if self.release.wait(0.1):
                    break
        elif self.path == "/redirect-ok":
            self.redirect(302, f"http://127.0.0.1:{port}/ok")
        elif self.path == "/redirect-bad":
            self.redirect(302, f"http://localhost:{port}/ok")
        elif self.path == "/redirect-same-origin":
            self.redirect(307, "/headers")
        elif self.path == "/redirect-other-origin":
            self.redirect(307, f"http://localhost:{port}/headers")
        elif self.path == "/redirect-file":
            self.redirect(302, "file:///etc/passwd")
        elif self.path == "/loop":
            self.redirect(302, "/loop")
        else:
            self.send(404, b"not found")


@pytest.fixture
def server() -> Iterator[Server]:
    release = threading.Event()
    handler = type("BoundHandler", (Handler,), {"release": release})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(port=httpd.server_address[1], release=release)
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def tool() -> HttpTool:
    return HttpTool(["127.0.0.1"], timeout=5)


def test_get_ok(tool: HttpTool, server: Server) -> None:
    result = tool.get(server.url("/ok"))
    assert (result.status, result.text, result.truncated) == (200, "hello", False)
    assert result.headers["content-type"] == "text/plain; charset=utf-8"
    assert result.url == server.url("/ok")


def test_host_not_allowed(tool: HttpTool, server: Server) -> None:
    with pytest.raises(
        ToolRefused,
        match=r"host 'localhost' is not in tools\.allowed_hosts "
        r"\(127\.0\.0\.1\); add the host .* in config\.yaml to allow it",
    ):
        tool.get(server.url("/ok", host="localhost"))
    with pytest.raises(ToolRefused, match="host 'localhost' is not in"):
        tool.get(f"http://127.0.0.1@localhost:{server.port}/ok")  # userinfo is not the host


def test_empty_allowlist_refuses_all(server: Server) -> None:
    with pytest.raises(ToolRefused, match="empty, so every host is refused"):
        HttpTool([]).get(server.url("/ok"))


def test_star_must_be_written_out(server: Server) -> None:
    assert HttpTool(["*"]).get(server.url("/ok", host="localhost")).text == "hello"


def test_wildcard_entries() -> None:
    tool = HttpTool(["*.example.com", "Exact.ORG."])
    assert tool.reach.allows("api.example.com")
    assert tool.reach.allows("a.b.example.com")
    assert not tool.reach.allows("example.com")
    assert not tool.reach.allows("evilexample.com")
    assert tool.reach.allows("exact.org")
    assert not tool.reach.allows("sub.exact.org")


def test_bad_allowlist_entries_refused_at_build() -> None:
    for entry in ("https://api.example.com", "a*.example.com", "", "user@host"):
        with pytest.raises(ValueError, match="is not a host name"):
            HttpTool([entry])


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/"])
def test_bad_scheme_refused(tool: HttpTool, url: str) -> None:
    with pytest.raises(ToolRefused, match="is not allowed; only http and https URLs"):
        tool.get(url)


def test_redirect_to_allowed_host_followed(server: Server) -> None:
    result = HttpTool(["127.0.0.1"]).get(server.url("/redirect-ok"))
    assert (result.status, result.text, result.url) == (200, "hello", server.url("/ok"))


def test_redirect_to_disallowed_host_refused(tool: HttpTool, server: Server) -> None:
    start = server.url("/redirect-bad")
    with pytest.raises(
        ToolRefused, match=re.escape(f"redirect from {start}): host 'localhost' is not in")
    ):
        tool.get(start)


def test_redirect_to_file_scheme_refused(tool: HttpTool, server: Server) -> None:
    with pytest.raises(ToolRefused, match="scheme 'file' is not allowed"):
        tool.get(server.url("/redirect-file"))


def test_redirect_loop_stops(tool: HttpTool, server: Server) -> None:
    with pytest.raises(ToolError, match="redirected more than 5 times"):
        tool.get(server.url("/loop"))


def test_credentials_dropped_when_redirect_changes_origin(server: Server) -> None:
    tool = HttpTool(["127.0.0.1", "localhost"])
    secret = {"Authorization": "Bearer s3cret", "X-Trace": "t1"}
    same = json.loads(tool.get(server.url("/redirect-same-origin"), headers=secret).text)
    assert same["authorization"] == "Bearer s3cret"
    other = json.loads(tool.get(server.url("/redirect-other-origin"), headers=secret).text)
    assert "authorization" not in other
    assert other["x-trace"] == "t1"


def test_size_cap_truncates(server: Server) -> None:
    result = HttpTool(["127.0.0.1"], max_bytes=1024 * 1024).get(server.url("/big"))
    assert result.truncated is True
    assert len(result.text) == 1024 * 1024


def test_gzip_decoded_and_bomb_bounded(tool: HttpTool, server: Server) -> None:
    assert tool.get(server.url("/gzip-small")).text == "grüße"
    result = HttpTool(["127.0.0.1"], max_bytes=1000).get(server.url("/gzip-bomb"))
    assert (result.truncated, result.text) == (True, "a" * 1000)


def test_slow_server_times_out(server: Server) -> None:
    url = server.url("/slow")
    with pytest.raises(
        ToolError, match=re.escape(f"GET {url} timed out after 0.3 s; raise tools.http_timeout")
    ):
        HttpTool(["127.0.0.1"], timeout=0.3).get(url)


def test_trickling_body_hits_overall_limit(server: Server) -> None:
    with pytest.raises(ToolError, match=r"timed out after 0\.3 s"):
        HttpTool(["127.0.0.1"], timeout=0.3).get(server.url("/drip"))


def test_post_json_and_303(tool: HttpTool, server: Server) -> None:
    echo = json.loads(tool.post(server.url("/echo"), json={"a": 1}).text)
    assert echo == {"body": '{"a": 1}', "content-type": "application/json"}
    form = json.loads(tool.post(server.url("/echo"), data={"q": "x y"}).text)
    assert form["body"] == "q=x+y"
    after = tool.post(server.url("/see-other"), json={"a": 1})
    assert after.status == 200 and after.url == server.url("/headers")  # followed as a GET
    with pytest.raises(ToolError, match="either json or data"):
        tool.post(server.url("/echo"), json={}, data="x")


def test_secrets_not_logged(
    tool: HttpTool, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tool.get(server.url("/ok?token=q-s3cret"), headers={"Authorization": "Bearer h-s3cret"})
    assert "h-s3cret" not in caplog.text  # header values: no logger at all
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("gateway.")]
    assert ours and not any("q-s3cret" in line for line in ours)  # and no query in ours


def test_call_summary(tool: HttpTool, server: Server) -> None:
    text = tool.call({"url": server.url("/ok")})
    assert text == "HTTP 200\ncontent-type: text/plain; charset=utf-8\n\nhello"
    small = HttpTool(["127.0.0.1"], max_bytes=3).call({"method": "GET", "url": server.url("/ok")})
    assert small.startswith("HTTP 200 (body cut at 3 bytes; raise tools.max_bytes")
    with pytest.raises(ToolError, match="method 'DELETE' is not supported"):
        tool.call({"method": "DELETE", "url": server.url("/ok")})
    with pytest.raises(ToolError, match="headers must be an object"):
        tool.call({"url": server.url("/ok"), "headers": "Authorization: x"})
