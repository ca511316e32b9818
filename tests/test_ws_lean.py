"""Lean WebSockets (issue 21): one greenlet per idle `/ws` connection, one shared ping timer, and
frames written from other greenlets while the connection's own greenlet waits to read.

The gateway runs as `tests/ws_gateway_probe.py` (the real gateway with a window into its
WebSocket channel on stdin/stdout), so a test counts greenlets and drives the ping rounds
itself instead of waiting 25 s for the timer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websocket
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Message, TextMessage

from gateway.channels.ws_socket import WsSocket
from tests.conftest import (
    ROOT,
    GatewayProcess,
    assert_only_gateway_left,
    free_port,
    model_config,
    new_token,
    write_config,
)
from tests.fakes.fake_model import FakeModelServer

PROBE = ROOT / "tests" / "ws_gateway_probe.py"


class ProbedGateway(GatewayProcess):
    """`GatewayProcess` run through the probe; `ask` sends it one request."""

    def start(self, wait: bool = True) -> ProbedGateway:
        env = {**os.environ, "MOLTBOT_HOME": str(self.home)}
        with open(self.out_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(PROBE), "--port", str(self.port)],
                                         env=env, cwd=ROOT, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=out)
        self.wait_healthy()
        self.token = new_token(self.home)
        return self

    def stop(self, timeout: float = 20) -> int:
        try:
            return super().stop(timeout)
        finally:
            assert self.proc is not None and self.proc.stdin and self.proc.stdout
            self.proc.stdin.close()
            self.proc.stdout.close()

    def ask(self, op: str) -> Any:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"op": op}).encode() + b"\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory,
       model: FakeModelServer) -> Iterator[ProbedGateway]:
    home = tmp_path_factory.mktemp("ws-lean") / "ai-gateway"
    write_config(home, model_config(model.url))
    gateway = ProbedGateway(home, free_port()).start()
    assert gateway.ask("keepalive.stop") == "stopped"  # the tests ping, not the clock
    yield gateway
    gateway.stop()


@pytest.fixture(autouse=True)
def no_leftover_processes(gw: ProbedGateway) -> Iterator[None]:
    yield
    assert_only_gateway_left(gw)


def connect(gw: GatewayProcess, by_frame: bool = False) -> websocket.WebSocket:
    """An authenticated connection (header, or a first `auth` frame) that is in the channel's
    read loop: it has answered a `ping` frame."""
    if by_frame:
        ws = websocket.create_connection(f"ws://127.0.0.1:{gw.port}/ws", timeout=30)
        ws.send(json.dumps({"type": "auth", "token": gw.token}))
        assert json.loads(ws.recv())["type"] == "auth.ok"
    else:
        ws = websocket.create_connection(f"ws://127.0.0.1:{gw.port}/ws", timeout=30,
                                         header=[f"Authorization: Bearer {gw.token}"])
    ws.send(json.dumps({"type": "ping", "id": "here?"}))
    assert json.loads(ws.recv()) == {"type": "pong", "id": "here?"}
    return ws


def until(check: Any, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_an_idle_connection_is_one_greenlet_and_holds_no_request(gw: ProbedGateway) -> None:
    before, objects = gw.ask("greenlets"), gw.ask("objects")
    assert before["keepalive"] == 0  # stopped by the fixture
    held = [connect(gw, by_frame=i % 2 == 1) for i in range(10)]
    try:
        assert gw.ask("greenlets")["serving"] == before["serving"] + 10
        # no request context, request, simple-websocket Server or handshake left per connection
        assert gw.ask("objects") == objects
    finally:
        for ws in held:
            ws.close()
    until(lambda: gw.ask("greenlets")["serving"] == before["serving"])


def test_the_shared_ping_closes_who_stops_answering_and_keeps_who_answers(
        gw: ProbedGateway) -> None:
    silent, answering = connect(gw), connect(gw)
    try:
        assert gw.ask("tick") == "ticked"  # both pinged
        frame = answering.recv_data_frame(True)[1]  # websocket-client answers with a pong
        assert frame.opcode == websocket.ABNF.OPCODE_PING
        until(lambda: gw.ask("awaiting") == 1)  # only the silent one owes a pong
        assert gw.ask("tick") == "ticked"  # the silent one missed its ping: closed
        assert silent.recv_frame().opcode == websocket.ABNF.OPCODE_PING  # never answered
        closing = silent.recv_frame()
        assert closing.opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(closing.data[:2], "big") == 1008
        assert closing.data[2:] == b"Ping/Pong timeout"
        # the answering one was pinged again and still gets its messages answered
        answering.send(json.dumps({"type": "message", "id": "m1", "text": "hi",
                                   "chat": "lean-ping"}))
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1].get("type") not in ("reply", "error"):
            opcode, data = answering.recv_data(True)
            if opcode == websocket.ABNF.OPCODE_TEXT:
                frames.append(json.loads(data))
        assert frames[-1]["type"] == "reply"
        until(lambda: gw.ask("awaiting") == 0)  # its pong to the second ping arrived
    finally:
        silent.close()
        answering.close()


def test_stopping_the_channel_closes_every_connection_with_1001(gw: ProbedGateway) -> None:
    held = [connect(gw), connect(gw, by_frame=True)]
    try:
        assert gw.ask("channel.stop") == "done"  # what a shutdown does
        for ws in held:
            closing = ws.recv_frame()
            assert closing.opcode == websocket.ABNF.OPCODE_CLOSE
            assert int.from_bytes(closing.data[:2], "big") == 1001
            assert closing.data[2:] == b"channel stopping"
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            connect(gw)
        assert refused.value.status_code == 503
    finally:
        assert gw.ask("channel.start") == "done"
        assert gw.ask("keepalive.stop") == "stopped"  # started again with the channel
        for ws in held:
            ws.close()
    connect(gw).close()


# -- the socket alone, no gateway: plain threads stand in for greenlets ----------------------
Pair = tuple[WsSocket, socket.socket, Connection]


@pytest.fixture
def pair() -> Iterator[Pair]:
    """A server `WsSocket` on one end, the raw client socket and a client codec on the other
    (the server end's frame limit is 10 bytes)."""
    server_end, client_end = socket.socketpair()
    yield WsSocket(server_end, Connection(ConnectionType.SERVER), 10), client_end, Connection(
        ConnectionType.CLIENT)
    server_end.close()
    client_end.close()


def client_events(sock: socket.socket, codec: Connection) -> list[Any]:
    codec.receive_data(sock.recv(65536))
    return list(codec.events())


def test_a_frame_from_another_greenlet_goes_out_while_the_reader_waits(pair: Pair) -> None:
    ws, client, codec = pair
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(ws.receive()))
    reader.start()
    ws.send("pushed")  # the reader is (or soon will be) in recv
    events = client_events(client, codec)
    assert [(type(e), e.data) for e in events] == [(TextMessage, "pushed")]
    client.sendall(codec.send(TextMessage(data="an answer")))
    reader.join(10)
    assert got == ["an answer"]


def test_a_message_larger_than_the_socket_buffer_goes_out_whole(pair: Pair) -> None:
    ws, client, codec = pair
    big = "x" * 1_000_000  # a socketpair's buffer holds a few hundred KB: the send is partial
    writer = threading.Thread(target=ws.send, args=(big,))
    writer.start()
    parts: list[str] = []
    finished = False
    while not finished:
        for event in client_events(client, codec):
            parts.append(event.data)
            finished = event.message_finished
    writer.join(10)
    assert "".join(parts) == big


def test_fragments_are_joined_and_a_message_over_the_limit_closes_with_1009(pair: Pair) -> None:
    ws, client, codec = pair
    client.sendall(codec.send(TextMessage(data="ab", message_finished=False))
                   + codec.send(TextMessage(data="cd", message_finished=True)))
    assert ws.receive() == "abcd"
    client.sendall(codec.send(Message(data=b"x" * 11)))
    assert ws.receive() is None
    closes = [e for e in client_events(client, codec) if isinstance(e, CloseConnection)]
    assert [c.code for c in closes] == [1009]


def test_a_close_from_another_greenlet_ends_the_waiting_reader(pair: Pair) -> None:
    ws, client, codec = pair
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(ws.receive()))
    reader.start()
    ws.close(1001, "channel stopping")
    reader.join(10)
    assert got == [None] and not ws.open
    closes = [e for e in client_events(client, codec) if isinstance(e, CloseConnection)]
    assert [(c.code, c.reason) for c in closes] == [(1001, "channel stopping")]
