"""DingTalk's stream mode in a child process: `python -m gateway.channels.dingtalk_stream_host`.

The `dingtalk-stream` SDK is asyncio (websockets), which may not run on the gateway's gevent
loop (the thread rule in ARCHITECTURE.md), so it runs here, unpatched, speaking JSON lines
with the gateway (`common.child_lines`):

- in: `{"op": "connect", "client_id", "client_secret", "api_base"}` first (secrets on stdin,
  never argv); then `{"op": "ack", "id"}` once the gateway stored a message.
- out: `{"state": "connecting"}`, `{"state": "connected", "endpoint"}`, `{"heard": topic}`
  for each SYSTEM frame (DingTalk's keepalive pings: the liveness evidence),
  `{"message": data, "id": messageId}` for each robot message, and `{"ended": why}` last.

A robot message is acknowledged to DingTalk (the SDK's ack frame, code 200) only after the
gateway answered `ack`: stored, never before, and at once, not after the model's answer.
One that the gateway does not confirm within `ACK_WAIT` is acknowledged with 500, so DingTalk
delivers it again.

One life, one connection: when the connection closes (DingTalk's `disconnect`, a drop, a
refused ticket) or cannot be opened, the process ends, saying why, and the gateway starts a
fresh one on its backoff (1 s doubling to 30 s). The SDK's own loop would reconnect inside
the process after fixed 10 s sleeps, and no old connection can outlive its process: a
reloaded or restarted channel never leaves one behind to swallow messages (LangBot#1844).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import dingtalk_stream  # type: ignore[import-untyped]  # the SDK ships no type hints
from dingtalk_stream import AckMessage, CallbackHandler, CallbackMessage, ChatbotMessage
from dingtalk_stream.frames import SystemMessage  # type: ignore[import-untyped]
from dingtalk_stream.handlers import SystemHandler  # type: ignore[import-untyped]

from gateway.common.child_lines import Lines, Out, run

ACK_WAIT = 30.0  # seconds the gateway has to store a message before DingTalk gets a 500
OPEN_PATH = "/v1.0/gateway/connections/open"


class LastError(logging.Handler):
    """Keeps the SDK's last error line: the reason a connection failed, which the SDK logs
    rather than raises."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            self.last = f"{type(error).__name__}: {error}"[:300]
            return
        try:
            self.last = record.getMessage()[:300]
        except TypeError:  # the SDK's own format mistakes
            self.last = str(record.msg)[:300]


class Life:
    """This process's one connection: how it ends, and the messages waiting for `ack`."""

    def __init__(self, out: Out) -> None:
        self.out = out
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting: dict[str, asyncio.Future[None]] = {}

    def end(self, why: str) -> None:
        if not self.ended.done():
            self.ended.set_result(why)


class StreamClient(dingtalk_stream.DingTalkStreamClient):
    """The SDK's client, told to open one connection and to say how it went."""

    def __init__(self, credential: dingtalk_stream.Credential, life: Life,
                 errors: LastError) -> None:
        logger = logging.getLogger("moltbot.dingtalk_stream")
        logger.propagate = False
        logger.addHandler(errors)
        super().__init__(credential, logger)
        self.life = life
        self.errors = errors
        self.opened = False
        self.moved = False  # DingTalk sent its disconnect frame
        self.endpoint = ""

    def open_connection(self) -> Any:
        if self.opened:  # the SDK loops to connect again: this life's connection is over
            self.life.end(self.why_closed())
            return None
        self.opened = True
        self.life.out.send({"state": "connecting"})
        connection = super().open_connection()
        if not connection:
            self.life.end(self.errors.last or "opening a connection failed")
            return None
        self.endpoint = str(connection.get("endpoint", ""))  # the ticket travels apart
        return connection

    async def keepalive(self, ws: Any, ping_interval: int = 60) -> None:
        """Runs once the WebSocket is open: says so, then ends this life when it closes
        (websockets' own pings detect a dead peer; the SDK's are not needed)."""
        self.life.out.send({"state": "connected", "endpoint": self.endpoint})
        await ws.wait_closed()
        self.life.end(self.why_closed())

    def why_closed(self) -> str:
        ws = self.websocket
        if self.moved:
            return "DingTalk moved the connection (a disconnect frame); reconnecting"
        if ws is not None and ws.close_code is not None:
            return (f"the stream connection closed ({ws.close_code}"
                    f"{': ' + ws.close_reason if ws.close_reason else ''})")
        return self.errors.last or "the stream connection ended"


class Heard(SystemHandler):
    """SYSTEM frames (DingTalk's pings) are answered by the SDK and reported as evidence."""

    def __init__(self, life: Life) -> None:
        super().__init__()
        self.life = life

    async def process(self, message: SystemMessage) -> tuple[int, str]:
        topic = message.headers.topic or ""
        if topic == SystemMessage.TOPIC_DISCONNECT and isinstance(self.dingtalk_client,
                                                                  StreamClient):
            self.dingtalk_client.moved = True
        self.life.out.send({"heard": topic})
        return AckMessage.STATUS_OK, "OK"


class RobotMessages(CallbackHandler):
    """Each robot message to the gateway; the SDK acks it with what `process` returns."""

    def __init__(self, life: Life) -> None:
        super().__init__()
        self.life = life

    async def process(self, message: CallbackMessage) -> tuple[int, str]:
        message_id = str(message.headers.message_id or "")
        stored = asyncio.get_running_loop().create_future()
        self.life.waiting[message_id] = stored
        self.life.out.send({"message": message.data, "id": message_id})
        try:
            await asyncio.wait_for(stored, ACK_WAIT)
        except TimeoutError:
            return AckMessage.STATUS_SYSTEM_EXCEPTION, "not stored yet"
        finally:
            self.life.waiting.pop(message_id, None)
        return AckMessage.STATUS_OK, "OK"


def client_for(config: dict[str, Any], life: Life) -> StreamClient:
    # the SDK reads the class attribute itself: set here, for this process's one client
    base = str(config.get("api_base") or "https://api.dingtalk.com").rstrip("/")
    dingtalk_stream.DingTalkStreamClient.OPEN_CONNECTION_API = base + OPEN_PATH
    logging.getLogger("dingtalk_stream.handler").setLevel(logging.WARNING)
    client = StreamClient(dingtalk_stream.Credential(str(config.get("client_id") or ""),
                                                     str(config.get("client_secret") or "")),
                          life, LastError())
    heard = Heard(life)
    heard.dingtalk_client = client
    client.system_handler = heard
    client.register_callback_handler(ChatbotMessage.TOPIC, RobotMessages(life))
    return client


async def serve(lines: Lines, out: Out) -> None:
    life = Life(out)
    config = await lines.get()
    if config is None or config.get("op") != "connect":
        return
    stream = asyncio.create_task(client_for(config, life).start())
    reading = asyncio.create_task(_acks(lines, life))
    ends: list[asyncio.Future[Any]] = [life.ended, reading, stream]
    await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
    if not reading.done():  # the gateway is still there: tell it why this life ended
        out.send({"ended": life.ended.result() if life.ended.done() else
                  "the SDK's connection loop ended"})
    # the SDK's loop swallows cancellation (it sleeps and reconnects), so asyncio.run could
    # never finish it: the process ends here, and its connection with it
    os._exit(0)


async def _acks(lines: Lines, life: Life) -> None:
    """The gateway's acks, until its pipe closes (it stopped, or was killed)."""
    while (line := await lines.get()) is not None:
        if line.get("op") == "ack":
            stored = life.waiting.get(str(line.get("id")))
            if stored is not None and not stored.done():
                stored.set_result(None)


if __name__ == "__main__":
    run(serve)
