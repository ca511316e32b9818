"""The request head as pywsgi gets it (`gateway.server.request_head`): the same headers as
`http.client.parse_headers` gives for what clients send, and a 400 for what no client should."""

from __future__ import annotations

import io
import socket
from http import client

from gevent.pywsgi import OldMessage

from gateway.server.request_head import MAX_HEADERS, read_head
from tests.conftest import GatewayProcess

HEAD = (b"Host: 127.0.0.1:18789\r\nAccept-Encoding: identity\r\nContent-Length: 45\r\n"
        b"Authorization: Bearer mb_x\r\nCookie: a=1\r\nCookie: b=2\r\n"
        b"Content-Type: application/json; charset=utf-8\r\nX-Empty:\r\n\r\n{\"text\": 1}")


def test_the_headers_are_those_http_client_reads_and_the_body_is_left() -> None:
    ours, theirs = io.BytesIO(HEAD), io.BytesIO(HEAD)
    mine, stdlib = read_head(ours, 0), client.parse_headers(theirs, _class=OldMessage)
    assert list(mine.headers) == list(stdlib.headers)
    assert mine.get_all("cookie") == ["a=1", "b=2"] and mine.get("x-empty") == ""
    assert mine.typeheader == "application/json; charset=utf-8" and not mine.status
    assert ours.read() == theirs.read() == b'{"text": 1}'


def test_a_folded_line_continues_the_value_and_bare_newlines_end_lines() -> None:
    head = read_head(io.BytesIO(b"X-Long: one\r\n  two\nHost: h\n\n"), 0)
    assert list(head.headers) == ["X-Long: one two\r\n", "Host: h\r\n"]


def test_heads_no_client_sends_are_refused_by_status() -> None:
    assert read_head(io.BytesIO(b"no colon here\r\n\r\n")).status.startswith("Invalid header")
    assert read_head(io.BytesIO(b"Host : spaced\r\n\r\n")).status.startswith("Invalid header")
    assert read_head(io.BytesIO(b"X: " + b"a" * 70000 + b"\r\n\r\n")).status == "Line too long"
    many = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n"
    assert read_head(io.BytesIO(many)).status == f"More than {MAX_HEADERS} headers"


def test_a_bad_head_gets_a_400_and_the_gateway_serves_on(gateway: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert gateway.post("still answering").status_code == 200
