"""The MCP servers' clients, in one child process: `python -m gateway.mcp.host`.

Why a process: the official `mcp` SDK is asyncio (anyio). Under gevent its event loop, its
threads (anyio's worker threads, the stdio transport's process handling) and their C-level
waits would run on the gateway's one loop and could freeze every conversation (the thread rule
in ARCHITECTURE.md). Here nothing is patched: plain asyncio, as the SDK's authors test it.
Nothing here imports the gateway's server, core or gevent. Why one process for every server:
a host costs ~65 MB, a session inside it next to nothing (`bench/run.py mcp`); each server is
an asyncio task that starts, fails and stops alone.

Protocol, JSON lines; every line names its `"server"`. In (stdin): `{"op": "start", "server",
"spec": {"command": [...] | null, "url": "..." | null, "headers", "env", "cwd"}}` (specs travel
on the pipe, never in argv, so `ps` shows no header or secret), `{"op": "stop", "server"}`,
`{"op": "call", "server", "id": n, "tool", "arguments", "timeout": seconds}`. Out (stdout):
`{"server", "ready": true, "tools": [...], "info": "..."}` once initialised, `{"server",
"tools": [...]}` when the server says its list changed, `{"server", "id": n, "text", "is_error"}`
or `{"server", "id": n, "error"}` per call, and `{"server", "failed": "why"}` when the server
could not start, died, or stopped answering (the gateway starts it again later). The process
ends when stdin closes (the gateway stopped or was killed), taking its stdio servers with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
import threading
from collections import deque
from typing import Any

import anyio
import httpx2  # the SDK's own HTTP client
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared.exceptions import MCPError
from mcp_types import Implementation, ToolListChangedNotification

from gateway.common.child_lines import Lines, Out, each_line, run

PROBE_INTERVAL = 30.0  # seconds between liveness checks of an idle server (a tools listing)
PROBE_TIMEOUT = 15.0
INIT_TIMEOUT = 30.0
STDERR_LINES = 20  # the last lines of a stdio server's stderr kept for the failure reason
HTTP_TIMEOUT, HTTP_READ_TIMEOUT = 30.0, 300.0  # what the SDK's own HTTP client uses


class ServerGone(Exception):
    """The server cannot be used any more; the message says why (shown in `moltbot mcp list`)."""


class StderrTail:
    """A stdio server's stderr: each line goes on to ours (the gateway's log) prefixed with
    the server's name, and the last few are kept to say why it failed. Its end means the
    server process (and whatever inherited its stderr) is gone."""

    def __init__(self, name: str) -> None:
        self.name = name
        read, write = os.pipe()
        self.writer = os.fdopen(write, "w", encoding="utf-8", errors="replace")
        self.lines: deque[str] = deque(maxlen=STDERR_LINES)
        self.ended = threading.Event()
        threading.Thread(target=self._read, args=(read,), daemon=True).start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, encoding="utf-8", errors="replace") as stream:
            for line in stream:
                text = line.rstrip()
                if text:
                    self.lines.append(text)
                    print(f"mcp server {self.name}: {text}", file=sys.stderr, flush=True)
        self.ended.set()

    def last(self) -> str:
        return self.lines[-1] if self.lines else ""


def tool_listing(tools: Any) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description or t.title or "",
             "input_schema": t.input_schema or {"type": "object"}} for t in tools]


def call_text(result: Any) -> str:
    """What the model or skill reads: the text parts, and a note for each part that is not."""
    parts = []
    for item in result.content:
        text = getattr(item, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(item, 'type', 'content')}"
                     f" not shown]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


def reason(error: BaseException) -> str:
    """One sentence for an exception, unwrapping the task groups anyio raises."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = str(error) or type(error).__name__
    return text if isinstance(error, ServerGone) else f"{type(error).__name__}: {text}"


class Session:
    """One connected server: answers calls, watches that the server lives."""

    def __init__(self, name: str, spec: dict[str, Any], out: Out) -> None:
        self.name = name
        self.spec = spec
        self.out = out
        self.stderr: StderrTail | None = None
        self.client: Any = None
        self.calls: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.refused = ""  # the last HTTP error status: the SDK's error does not say it
        self.http: Any = None  # an HTTP server's client, closed with the session

    async def saw_response(self, response: Any) -> None:
        if response.status_code >= 400:
            self.refused = f"HTTP {response.status_code}"

    def send(self, line: dict[str, Any]) -> None:
        self.out.send({"server": self.name, **line})

    def build_client(self) -> Any:
        info = Implementation(name="moltbot", version=str(self.spec.get("version") or "0"))
        if self.spec.get("command"):
            command = list(self.spec["command"])
            self.stderr = StderrTail(self.name)
            params = StdioServerParameters(command=command[0], args=command[1:],
                                           env=dict(self.spec.get("env") or {}),
                                           cwd=self.spec.get("cwd"))
            transport: Any = stdio_client(params, errlog=self.stderr.writer)
        else:
            self.http = httpx2.AsyncClient(
                headers=dict(self.spec.get("headers") or {}),
                timeout=httpx2.Timeout(HTTP_TIMEOUT, read=HTTP_READ_TIMEOUT),
                event_hooks={"response": [self.saw_response]})
            transport = streamable_http_client(self.spec["url"], http_client=self.http)
        return Client(transport, client_info=info, cache=None,
                      message_handler=self.on_message)

    async def on_message(self, message: Any) -> None:
        """The server's tool list changed: the gateway offers what it lists now."""
        if isinstance(getattr(message, "root", message), ToolListChangedNotification):
            self.send({"tools": await self.list_tools()})

    async def follow_tool_changes(self) -> None:
        """A 2026-07-28 server says its tool list changed on a `subscriptions/listen` stream;
        an older one sends a notification (`on_message`). Either way the gateway gets the new
        list. A stream that drops ends here; `watch` finds out whether the server is gone."""
        try:
            async with self.client.listen(tools_list_changed=True) as changes:
                async for _ in changes:
                    self.send({"tools": await self.list_tools()})
        except (ListenNotSupportedError, SubscriptionLost, MCPError):
            return

    async def list_tools(self) -> list[dict[str, Any]]:
        found: list[Any] = []
        cursor = None
        while True:
            page = await self.client.list_tools(cursor=cursor)
            found += page.tools
            cursor = page.next_cursor
            if not cursor:
                return tool_listing(found)

    async def run(self) -> None:
        """Connect, say ready, answer calls until cancelled; raise ServerGone when the
        server cannot go on."""
        self.client = self.build_client()
        try:
            await self.connect_and_serve()
        finally:
            self.close_stderr()
            if self.http is not None:
                with contextlib.suppress(Exception):
                    await self.http.aclose()

    async def connect_and_serve(self) -> None:
        ready = False
        # the deadline covers the start only: it is lifted once the server answered
        with anyio.CancelScope(deadline=anyio.current_time() + INIT_TIMEOUT) as start:
            try:
                async with self.client:
                    tools = await self.list_tools()
                    start.deadline = math.inf
                    ready = True
                    await self.serve(tools)
            except ServerGone:
                raise
            except Exception as e:
                if ready:
                    raise
                raise ServerGone(self.why(e)) from e
        if start.cancelled_caught:
            raise ServerGone(self.why(None, f"it did not initialise within "
                                            f"{INIT_TIMEOUT:.0f}s"))

    async def serve(self, tools: list[dict[str, Any]]) -> None:
        self.close_stderr()
        info = self.client.server_info
        self.send({"ready": True, "tools": tools,
                   "info": f"{info.name} {info.version}".strip() if info else ""})
        async with anyio.create_task_group() as group:
            group.start_soon(self.watch)
            group.start_soon(self.follow_tool_changes)
            while True:
                group.start_soon(self.answer, await self.calls.get())

    async def watch(self) -> None:
        """End the session when the server is gone: a stdio server's stderr closed (it
        exited), or an idle server stopped answering a tools listing."""
        while True:
            for _ in range(int(PROBE_INTERVAL * 10)):
                await anyio.sleep(0.1)
                if self.stderr is not None and self.stderr.ended.is_set():
                    raise ServerGone(self.why(None, "it exited"))
            try:
                with anyio.fail_after(PROBE_TIMEOUT):
                    await self.list_tools()
            except Exception as e:
                raise ServerGone(self.why(e, "it stopped answering")) from e

    async def answer(self, call: dict[str, Any]) -> None:
        call_id = call.get("id")
        timeout = float(call.get("timeout") or 30)
        try:
            with anyio.fail_after(timeout):
                result = await self.client.call_tool(str(call["tool"]),
                                                     dict(call.get("arguments") or {}))
        except TimeoutError:
            self.send({"id": call_id, "error": f"the tool did not answer within "
                                                   f"{timeout:g}s"})
            return
        except MCPError as e:
            if "closed" in str(e).lower():
                self.send({"id": call_id, "error": "the server went away during the call"})
                raise ServerGone(self.why(e, "the connection closed")) from e
            self.send({"id": call_id, "error": f"the server refused: {e}"})
            return
        except Exception as e:  # transport errors: the HTTP server is down
            self.send({"id": call_id, "error": f"the call failed: {reason(e)}"})
            raise ServerGone(self.why(e, "a call failed")) from e
        self.send({"id": call_id, "text": call_text(result),
                       "is_error": bool(result.is_error)})

    def close_stderr(self) -> None:
        """Our copy of the stderr pipe's write end: the server holds its own, so once ours is
        closed, the pipe's end is the server's end (and no descriptor is left behind)."""
        if self.stderr is not None:
            self.stderr.writer.close()

    def why(self, error: BaseException | None, what: str = "") -> str:
        """The failure as the owner reads it: a stdio server's last stderr line says most."""
        if self.stderr is not None:
            self.close_stderr()
            self.stderr.ended.wait(1.0)  # let its last words arrive
            last = self.stderr.last()
            if last:
                return f"{what or 'it failed'}: {last}" if what else last
        if error is None:
            return what
        found = reason(error) + (f" ({self.refused})" if self.refused else "")
        return f"{what}: {found}" if what else found


class Host:
    """Every server's session, each an asyncio task of its own."""

    def __init__(self, out: Out) -> None:
        self.out = out
        self.sessions: dict[str, tuple[Session, asyncio.Task[None]]] = {}

    def take(self, line: dict[str, Any]) -> None:
        name = str(line.get("server"))
        op = line.get("op")
        if op == "start":
            self.stop(name)
            session = Session(name, dict(line.get("spec") or {}), self.out)
            self.sessions[name] = (session, asyncio.create_task(self.run(session)))
        elif op == "stop":
            self.stop(name)
        elif op == "call":
            found = self.sessions.get(name)
            if found is None:
                self.out.send({"server": name, "id": line.get("id"),
                               "error": "the server is not running"})
            else:
                found[0].calls.put_nowait(line)

    def stop(self, name: str) -> None:
        found = self.sessions.pop(name, None)
        if found is not None:
            found[1].cancel()

    async def run(self, session: Session) -> None:
        try:
            await session.run()
        except Exception as e:
            session.send({"failed": reason(e)})
        finally:
            if self.sessions.get(session.name, (None,))[0] is session:
                del self.sessions[session.name]

    async def close(self) -> None:
        tasks = [task for _, task in self.sessions.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def serve(lines: Lines, out: Out) -> None:
    host = Host(out)
    await each_line(lines, host.take, host.close)


if __name__ == "__main__":
    run(serve)
