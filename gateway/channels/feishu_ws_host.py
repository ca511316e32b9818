"""The Feishu channel's child process: `python -m gateway.channels.feishu_ws_host`.

Why a process: lark-oapi's long connection (`lark_oapi.ws.Client`) is asyncio over
`websockets`, with a module-level event loop it takes at import; under gevent's patching that
loop and its waits would share the gateway's one loop (the thread rule in ARCHITECTURE.md).
Here nothing is patched: plain asyncio, as the SDK's authors run it. The child also does the
channel's other SDK work, so the gateway process never imports the SDK: the message API
(`feishu_api`), and the callback mode's decryption and verification (the SDK's
`EventDispatcherHandler`).

Protocol (JSON lines, `common.child_lines`). In: `{"op": "config", "app_id", "app_secret",
"domain", "mode", "encrypt_key", "verification_token", "timeout"}` first (secrets on the pipe,
never in argv or env); `{"op": "ack", "id", "ok"}` answers an event; `{"op": "send" |
"download" | "callback", "id", ...}` are calls, answered `{"id", ...}`. Out: `{"bot": {...}}`
(the bot's open_id, once the credentials worked), `{"state": "connected" | "retrying",
"detail"}`, `{"heard": "pong"}` for each pong of the long connection (liveness evidence),
`{"event": {...}, "id"}` for each `im.message.receive_v1`.

Ack first, answer later: the SDK answers each event frame when its handler returns; here the
frame's answer waits for the gateway's `ack` (sent once the message is stored, long before the
model answers), at most `ACK_WAIT` seconds (Feishu wants it within 3 s). No ack, or a refusal:
the frame is answered 500 and Feishu delivers the event again (deduplicated on message_id).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
import time
from typing import Any

import lark_oapi as lark  # type: ignore[import-untyped]
from lark_oapi.core.exception import EventException  # type: ignore[import-untyped]
from lark_oapi.event.dispatcher_handler import EventDispatcherHandler  # type: ignore[import-untyped]
from lark_oapi.ws import client as ws_client  # type: ignore[import-untyped]
from lark_oapi.ws.const import (  # type: ignore[import-untyped]
    HEADER_BIZ_RT,
    HEADER_MESSAGE_ID,
    HEADER_SEQ,
    HEADER_SUM,
    HEADER_TYPE,
)
from lark_oapi.ws.enum import MessageType  # type: ignore[import-untyped]
from lark_oapi.ws.exception import ClientException  # type: ignore[import-untyped]
from lark_oapi.ws.model import Response  # type: ignore[import-untyped]

from gateway.channels.feishu_api import ApiError, FeishuApi, describe
from gateway.common.child_lines import Lines, Out, run

ACK_WAIT = 2.5  # seconds an event frame waits for the gateway's ack (Feishu's bound is 3 s)
MESSAGE_EVENT = "im.message.receive_v1"
log = logging.getLogger("feishu_ws_host")


def dispatcher(encrypt_key: str, verification_token: str,
               found: list[dict[str, Any]]) -> EventDispatcherHandler:
    """The SDK's dispatcher; each message event it parses lands in `found` as JSON."""
    return (lark.EventDispatcherHandler.builder(encrypt_key, verification_token)
            .register_p2_im_message_receive_v1(
                lambda data: found.append(json.loads(lark.JSON.marshal(data))))
            .build())


class Host:
    """The app's SDK parts and the lines to the gateway."""

    def __init__(self, config: dict[str, Any], out: Out) -> None:
        self.config = config
        self.out = out
        self.api = FeishuApi(config["app_id"], config["app_secret"], config["domain"],
                             float(config.get("timeout") or 30))
        self.found: list[dict[str, Any]] = []
        self.dispatcher = dispatcher(config.get("encrypt_key") or "",
                                     config.get("verification_token") or "", self.found)
        self.ids = itertools.count(1)
        self.acks: dict[int, asyncio.Future[bool]] = {}
        self.connection: LongConnection | None = None

    async def begin(self) -> None:
        """Learn who the bot is (retrying while Feishu refuses or cannot be reached), then,
        in long-connection mode, connect."""
        wait = 1.0
        while True:
            try:
                bot = await asyncio.to_thread(self.api.bot_info)
                break
            except ApiError as e:
                self.out.send({"state": "retrying", "detail": describe(e.code, e.msg)})
            except Exception as e:  # the network: the platform is out of reach
                self.out.send({"state": "retrying", "detail": f"cannot reach "
                               f"{self.config['domain']}: {type(e).__name__}"})
            await asyncio.sleep(wait)
            wait = min(wait * 2, 60.0)
        self.out.send({"bot": bot})
        if self.config.get("mode") == "callback":
            self.out.send({"state": "connected", "detail": "callback mode: Feishu posts "
                           "events to the callback path"})
            return
        self.connection = LongConnection(self)
        await self.connection.run()

    # -- events ------------------------------------------------------------------------------
    def parse(self, payload: bytes) -> list[dict[str, Any]]:
        """The message events in one long-connection payload (others are not ours)."""
        self.found.clear()
        with contextlib.suppress(EventException):  # not a message event: ignored
            self.dispatcher._do_without_validation(payload)
        events, self.found[:] = list(self.found), []
        return events

    async def forward(self, event: dict[str, Any]) -> bool:
        """Hand the event to the gateway; True once it says the message is stored."""
        event_id = next(self.ids)
        answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.acks[event_id] = answered
        self.out.send({"event": event, "id": event_id})
        try:
            return await asyncio.wait_for(answered, ACK_WAIT)
        except TimeoutError:
            return False
        finally:
            self.acks.pop(event_id, None)

    def acked(self, line: dict[str, Any]) -> None:
        answered = self.acks.get(int(line.get("id") or 0))
        if answered is not None and not answered.done():
            answered.set_result(bool(line.get("ok")))

    # -- calls -------------------------------------------------------------------------------
    async def call(self, line: dict[str, Any]) -> None:
        op, call_id = line.get("op"), line.get("id")
        try:
            if op == "send":
                answer = await asyncio.to_thread(self.api.send, line)
            elif op == "download":
                answer = await asyncio.to_thread(self.api.download, line["message_id"],
                                                 line["key"], line["kind"])
            else:
                answer = await self.callback(line)
        except ApiError as e:
            answer = e.answer()
        except Exception as e:  # the network or a bug: said, and the gateway retries
            log.exception("feishu: %s failed", op)
            answer = {"error": f"{type(e).__name__}: {e}", "retry": True}
        self.out.send({"id": call_id, **answer})

    async def callback(self, line: dict[str, Any]) -> dict[str, Any]:
        """One HTTP event callback: decrypted and verified by the SDK's dispatcher."""
        request = lark.RawRequest()
        request.uri = str(line.get("uri") or "")
        request.headers = dict(line.get("headers") or {})
        request.body = base64.b64decode(line.get("body") or "")
        self.found.clear()
        response = self.dispatcher.do(request)
        events, self.found[:] = list(self.found), []
        status = response.status_code
        body = (response.content or b"").decode("utf-8", "replace")
        if status != 200:
            refused = any(word in body for word in ("signature", "verification_token",
                                                    "encrypt_key", "decrypt"))
            if "processor not found" in body:  # an event type the channel does not take
                status, body = 200, '{"msg":"success"}'
            else:
                status = 401 if refused else 400
        return {"status": status, "body": body, "events": events}


class LongConnection(ws_client.Client):
    """The SDK's client, two things changed: an event frame's answer waits for the gateway's
    ack (see the module docstring), and pongs and reconnects are reported as evidence."""

    def __init__(self, host: Host) -> None:
        config = host.config
        super().__init__(config["app_id"], config["app_secret"], log_level=lark.LogLevel.WARNING,
                         event_handler=host.dispatcher, domain=config["domain"])
        self.host = host
        self.on_reconnecting = lambda: host.out.send(
            {"state": "retrying", "detail": "the long connection dropped; reconnecting"})
        self.on_reconnected = self._connected

    def _connected(self) -> None:
        self.host.out.send({"state": "connected", "detail": f"long connection to "
                            f"{self.host.config['domain']}"})

    async def run(self) -> None:
        """`Client.start` without its module-level loop: connect (a refusal of the app's
        credentials ends the child, which the gateway starts again later), ping, and let
        the SDK reconnect."""
        ws_client.loop = asyncio.get_running_loop()  # the SDK schedules its tasks on it
        try:
            await self._connect()
            self._connected()
        except ClientException as e:
            self.host.out.send({"state": "retrying", "detail": describe(e.code, str(e))})
            raise
        except Exception as e:
            self.host.out.send({"state": "retrying", "detail": f"connecting failed: {e}"})
            await self._disconnect()
            await self._reconnect()
        asyncio.get_running_loop().create_task(self._ping_loop())

    async def _handle_control_frame(self, frame: Any) -> None:
        await super()._handle_control_frame(frame)
        kinds = [h.value for h in frame.headers if h.key == HEADER_TYPE]
        if MessageType.PONG.value in kinds:
            self.host.out.send({"heard": "pong"})

    async def _handle_data_frame(self, frame: Any) -> None:
        """The SDK's own handling (multi-part payloads combined, the answer frame with its
        `biz_rt`), answered only after the gateway stored the message."""
        headers = {h.key: h.value for h in frame.headers}
        payload = frame.payload
        if int(headers.get(HEADER_SUM) or 1) > 1:
            payload = self._combine(headers[HEADER_MESSAGE_ID], int(headers[HEADER_SUM]),
                                    int(headers.get(HEADER_SEQ) or 0), payload)
            if payload is None:
                return
        if headers.get(HEADER_TYPE) != MessageType.EVENT.value:
            return  # cards are not the channel's; the SDK answers nothing for them either
        started = time.monotonic()
        code = 200
        try:
            for event in self.host.parse(payload):
                if not await self.host.forward(event):
                    code = 500  # not stored: Feishu delivers it again
        except Exception:
            log.exception("feishu: an event could not be handled")
            code = 500
        header = frame.headers.add()
        header.key, header.value = HEADER_BIZ_RT, str(int((time.monotonic() - started) * 1000))
        frame.payload = lark.JSON.marshal(Response(code=code)).encode("utf-8")
        await self._write_message(frame.SerializeToString())

    async def _reconnect(self) -> None:
        try:
            await super()._reconnect()
        except Exception as e:  # the SDK gave up (or the app was refused): the child ends
            self.host.out.send({"state": "retrying", "detail": f"reconnecting failed: {e}"})
            raise SystemExit(1) from e


async def serve(lines: Lines, out: Out) -> None:
    host: Host | None = None
    tasks: set[asyncio.Task[None]] = set()

    def spawn(work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        while (line := await lines.get()) is not None:
            op = line.get("op")
            if op == "config" and host is None:
                host = Host(line, out)
                spawn(_life(host))
            elif op == "ack" and host is not None:
                host.acked(line)
            elif op in ("send", "download", "callback") and host is not None:
                spawn(host.call(line))
    finally:
        for task in tasks:
            task.cancel()


async def _life(host: Host) -> None:
    """The connection's whole life; its end (credentials refused, the SDK gave up) ends the
    child so the gateway starts a fresh one after its backoff."""
    try:
        await host.begin()
    except (ClientException, SystemExit):
        os._exit(1)  # asyncio.run would wait on the SDK's tasks; nothing is left to say


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="feishu child: %(message)s")
    run(serve)


if __name__ == "__main__":
    main()
