"""Slack's Socket Mode connection, in a child process of its own (`common.child_lines`).

Why a child: slack_sdk's sync Socket Mode client hands every envelope to a
`ThreadPoolExecutor`, whose workers wait in C (`_queue.SimpleQueue.get`); under the gateway's
`patch_all(queue=False)` those workers are greenlets and the first wait froze the loop for
good (measured: `tests/test_slack_socket_hosting.py`). So the gateway runs the SDK's asyncio
client (aiohttp) here, as its authors test it, and speaks JSON lines with it:

gateway -> child
    `{"op": "connect", "app_token", "api_base", "ping_interval"}` once per life of the child;
    `{"op": "ack", "envelope_id"}` once the envelope's message is stored.
child -> gateway
    `{"event": "hello", "connections"}` a socket is open and Slack greeted it;
    `{"event": "pong"}` Slack answered a ping on the socket (at most once a ping interval);
    `{"event": "envelope", "envelope_id", "type", "payload", "retry_attempt"}` one event;
    `{"event": "disconnect", "reason"}` Slack asked for a new socket (the SDK opens one);
    `{"event": "refused", "error"}` / `{"event": "unreachable", "why"}`: opening a socket
    (`apps.connections.open`) failed; the SDK tries again after a growing wait.

The child acknowledges an envelope only when the gateway says it is stored: an envelope
lost with a crash before that is delivered again by Slack (its retry answered once, by its
channel + ts).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient

from gateway.common.child_lines import Lines, Out, run

MAX_WAIT = 60.0  # seconds between attempts to open a socket Slack refused


class ReportingClient(SocketModeClient):
    """The SDK's client, telling the gateway why a socket could not be opened, and waiting
    longer after each refusal (the SDK alone tries again every ping interval)."""

    def __init__(self, out: Out, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out = out
        self.failures = 0

    async def issue_new_wss_url(self) -> str:
        try:
            url = await super().issue_new_wss_url()
        except SlackApiError as e:
            self.out.send({"event": "refused", "error": str(e.response.get("error") or
                                                             e.response.status_code)})
            await self._wait()
            raise
        except Exception as e:
            self.out.send({"event": "unreachable", "why": f"{type(e).__name__}: {e}"[:300]})
            await self._wait()
            raise
        self.failures = 0
        return url

    async def _wait(self) -> None:
        self.failures += 1
        await asyncio.sleep(min(MAX_WAIT, 2.0 ** (self.failures - 1)))


class Socket:
    """One Socket Mode client and the lines it reports."""

    def __init__(self, out: Out, settings: dict[str, Any]) -> None:
        self.out = out
        self.ping_interval = float(settings.get("ping_interval") or 10)
        web = AsyncWebClient(base_url=str(settings["api_base"]))
        self.client = ReportingClient(out, app_token=str(settings["app_token"]),
                                      web_client=web, ping_interval=self.ping_interval)
        self.client.message_listeners.append(self._frame)
        self.client.socket_mode_request_listeners.append(self._envelope)
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Connect (the SDK tries until it can) and report pongs, both beside the lines: a
        stop must be read even while Slack refuses the socket."""
        self.tasks = [asyncio.create_task(self.client.connect()),
                      asyncio.create_task(self._pongs())]

    async def ack(self, envelope_id: str) -> None:
        try:
            await self.client.send_socket_mode_response({"envelope_id": envelope_id})
        except Exception as e:  # the socket went away: Slack delivers the envelope again
            logging.getLogger(__name__).info("slack: ack of %s not sent: %s", envelope_id, e)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.client.close()

    async def _frame(self, _client: AsyncBaseSocketModeClient, message: dict[str, Any],
                     _raw: str | None) -> None:
        kind = message.get("type")
        if kind == "hello":
            self.out.send({"event": "hello", "connections": message.get("num_connections")})
        elif kind == "disconnect":
            self.out.send({"event": "disconnect", "reason": str(message.get("reason") or "")})

    async def _envelope(self, _client: AsyncBaseSocketModeClient,
                        request: SocketModeRequest) -> None:
        self.out.send({"event": "envelope", "envelope_id": request.envelope_id,
                       "type": request.type, "payload": request.payload,
                       "retry_attempt": request.retry_attempt})

    async def _pongs(self) -> None:
        """Each pong Slack sent since the last look, as evidence that the socket works."""
        seen = self.client.last_ping_pong_time
        while True:
            await asyncio.sleep(self.ping_interval / 2)
            now = self.client.last_ping_pong_time
            if now is not None and now != seen:
                seen = now
                self.out.send({"event": "pong"})


async def serve(lines: Lines, out: Out) -> None:
    socket: Socket | None = None
    try:
        while (line := await lines.get()) is not None:
            if line.get("op") == "connect" and socket is None:
                socket = Socket(out, line)
                socket.start()
            elif line.get("op") == "ack" and socket is not None:
                await socket.ack(str(line.get("envelope_id")))
    finally:
        if socket is not None:
            await socket.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    run(serve)
