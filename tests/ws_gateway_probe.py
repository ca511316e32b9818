"""The real gateway (`python -m gateway.server`, same arguments) with a window for tests into its
WebSocket channel: one JSON line on stdin, one JSON answer on stdout.

- `{"op": "greenlets"}`: live greenlets by what they do: `serving` (a `/ws` connection's, in the
  channel's modules or simple-websocket's), `keepalive` (the shared ping timer);
- `{"op": "objects"}`: live objects of the kinds an upgrade request makes (Flask's request
  context and request, simple-websocket's `Server`, wsproto's handshake), by class name;
- `{"op": "channel.stop"}`, `{"op": "channel.start"}`: the channel stops (as at shutdown, or
  `channels.websocket.enabled: false`) or starts again;
- `{"op": "keepalive.stop"}`: the ping timer stops, so a test pings by itself:
- `{"op": "tick"}`: one keepalive round now (ping who answered, close who did not);
- `{"op": "awaiting"}`: how many connections owe a pong.
"""

from gevent import monkey

monkey.patch_all(queue=False)  # as gateway.server.main, before anything else

import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import greenlet  # noqa: E402
from flask import Request  # noqa: E402
from flask.ctx import RequestContext  # noqa: E402
from gevent.socket import wait_read  # noqa: E402
from simple_websocket import Server  # noqa: E402
from wsproto.handshake import H11Handshake  # noqa: E402

from gateway.channels.websocket import WebSocketChannel  # noqa: E402
from gateway.server.main import main  # noqa: E402

SERVING = ("gateway/channels/websocket.py", "gateway/channels/ws_socket.py",
           "simple_websocket/ws.py")
KEEPALIVE = "gateway/channels/ws_keepalive.py"


def channel() -> WebSocketChannel:
    return next(o for o in gc.get_referrers(WebSocketChannel)
                if isinstance(o, WebSocketChannel))


def every_object() -> Iterator[object]:
    """What the garbage collector tracks, with a pause for the event loop every 10,000 (the
    suite fails a test during which a gateway's loop stopped for 0.5 s)."""
    for n, o in enumerate(gc.get_objects(), 1):
        yield o
        if n % 10_000 == 0:
            gevent.sleep(0)


def greenlets() -> dict[str, int]:
    counts = {"serving": 0, "keepalive": 0}
    for g in every_object():
        if not isinstance(g, greenlet.greenlet) or g.dead or g.gr_frame is None:
            continue
        files, frame = set(), g.gr_frame
        while frame is not None:
            files.add(frame.f_code.co_filename.replace("\\", "/"))
            frame = frame.f_back
        if any(f.endswith(KEEPALIVE) for f in files):
            counts["keepalive"] += 1
        elif any(f.endswith(s) for f in files for s in SERVING):
            counts["serving"] += 1
    return counts


def objects() -> dict[str, int]:
    kinds = (RequestContext, Request, Server, H11Handshake)
    counts = dict.fromkeys((k.__name__ for k in kinds), 0)
    for o in every_object():
        for kind in kinds:
            if isinstance(o, kind):
                counts[kind.__name__] += 1
    return counts


def answer(request: dict[str, Any]) -> Any:
    op = request["op"]
    if op == "greenlets":
        return greenlets()
    if op == "objects":
        gc.collect()  # what only a cycle holds is not held
        return objects()
    if op in ("channel.stop", "channel.start"):
        getattr(channel(), op.split(".")[1])()
        return "done"
    keepalive = channel().keepalive
    if op == "keepalive.stop":
        keepalive.stop()
        return "stopped"
    if op == "tick":
        keepalive.tick()
        return "ticked"
    if op == "awaiting":
        return sum(ws.awaiting_pong for ws in keepalive.sockets)
    return f"unknown op {op!r}"


def serve_stdin() -> None:
    pending = b""
    while True:
        wait_read(0)  # the loop runs on while the test is quiet
        chunk = os.read(0, 65536)
        if not chunk:
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            print(json.dumps(answer(json.loads(line))), flush=True)


gevent.spawn(serve_stdin)
sys.exit(main(sys.argv[1:]))
