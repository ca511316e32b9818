"""Slow clients cannot hold the gateway: a trickled head or body gets a 408 once
`gateway.request_timeout` has passed, and one address may hold only so many connections."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import gevent
from gevent import socket as gsocket

from gateway.server.httpserver import GatewayServer
from tests.conftest import GatewayProcess, free_port, model_config, write_config
from tests.fakes.fake_model import FakeModelServer


def trickle(port: int, head: bytes, then: bytes, deadline_s: float = 15.0) -> bytes:
    """Send `head`, then `then` one byte at a time, until the server answers or closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=deadline_s) as sock:
        sock.sendall(head)
        sock.settimeout(0.25)
        answer = b""
        ends = time.monotonic() + deadline_s
        for byte in then:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                sock.sendall(bytes([byte]))
                continue
            answer += chunk
            if not chunk or b"\r\n\r\n" in answer:
                break
            if time.monotonic() > ends:
                break
        sock.settimeout(deadline_s)
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except OSError:
            pass
        return answer


def test_a_trickled_head_or_body_is_cut_off_with_408(home: Path,
                                                     fake_model: FakeModelServer) -> None:
    write_config(home, {**model_config(fake_model.url), "gateway": {"request_timeout": 1}})
    gw = GatewayProcess(home, free_port()).start()
    try:
        head = trickle(gw.port, b"POST /api/v1/messages HTTP/1.1\r\n",
                       b"X-Slow: " + b"a" * 200 + b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and b"gateway.request_timeout" in head
        body = trickle(gw.port, (f"POST /api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 f"Authorization: Bearer {gw.token}\r\nContent-Type: "
                                 f"application/json\r\nContent-Length: 300\r\n\r\n").encode(),
                       b'{"text": "' + b"x" * 280 + b'"}')
        assert body.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in body
        assert gw.post("a prompt client is served").status_code == 200
    finally:
        gw.stop()


def test_one_address_may_hold_only_so_many_connections() -> None:
    server = GatewayServer(("127.0.0.1", 0), lambda env, start: [], max_connections=100,
                           keepalive_timeout=30, max_per_address=2)
    pairs = [gsocket.socketpair() for _ in range(4)]
    held = [gevent.spawn(server.handle, pairs[i][0], ("203.0.113.5", 1000 + i))
            for i in range(2)]
    gevent.sleep(0.2)
    assert server.by_address["203.0.113.5"] == 2
    pairs[2][1].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    server.handle(pairs[2][0], ("203.0.113.5", 2000))
    refused = pairs[2][1].recv(4096)
    assert refused.startswith(b"HTTP/1.1 503") and b"max_connections_per_ip" in refused
    other = gevent.spawn(server.handle, pairs[3][0], ("198.51.100.1", 3000))
    gevent.sleep(0.2)
    assert server.by_address["198.51.100.1"] == 1  # another address is let in
    for _, b in pairs:
        b.close()
    gevent.joinall([*held, other], timeout=10)
    assert not server.by_address  # every closed connection was counted out
    for a, _ in pairs:
        a.close()
