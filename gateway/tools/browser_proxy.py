"""The browser's only way out: an HTTP proxy inside the browser's process that checks every
request against the call's `tools.allowed_hosts`, by name and by address.

Why a proxy and not Playwright's request routing: a route sees only the first URL of a
redirect chain, never a service worker's requests, a WebSocket or a preconnect; Chromium sends
every one of them to its proxy. The proxy resolves the name itself, checks the addresses
(`reach.Reach.address_refusal`) and connects to the address it checked, so a name that
resolves differently a moment later (DNS rebinding) cannot slip past. Chromium is launched
with loopback proxied too (Playwright adds `<-loopback>` to the bypass rules).

Each call's browser context gets its own proxy credentials (a random user and password); the
proxy finds the call's allowlist by them and keeps what it refused for the call's answer. A
request without them gets 407 (Playwright answers with them); one with unknown ones, 403.
One request per connection: the proxy closes after each answer, so a connection can never
carry a second request to another host.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gateway.tools.reach import Reach

HEAD_LIMIT = 64 * 1024
COPY_CHUNK = 64 * 1024
CONNECT_TIMEOUT = 10.0
_DROPPED = ("proxy-authorization", "proxy-connection", "connection", "keep-alive")


@dataclass
class Gate:
    """One call's allowlist, and what the proxy refused for it."""

    reach: Reach
    user: str = field(default_factory=lambda: secrets.token_hex(8))
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    refused: list[str] = field(default_factory=list)

    def refuse(self, what: str, why: str) -> None:
        line = f"{what}: {why}"
        if line not in self.refused:
            self.refused.append(line)


class Refused(Exception):
    """The request may not go out; the message says why (kept for the call's answer)."""


class Proxy:
    """An asyncio HTTP/CONNECT proxy on 127.0.0.1 serving the open calls' gates."""

    def __init__(self) -> None:
        self.gates: dict[str, Gate] = {}
        self.server: asyncio.Server | None = None
        self.port = 0
        self.open: set[asyncio.StreamWriter] = set()  # connections being served

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and end every connection (their tasks then finish)."""
        if self.server is not None:
            self.server.close()
            for writer in list(self.open):
                writer.close()
            await self.server.wait_closed()
            while self.open:
                await asyncio.sleep(0.01)

    def open_gate(self, reach: Reach) -> Gate:
        gate = Gate(reach)
        self.gates[gate.user] = gate
        return gate

    def close_gate(self, gate: Gate) -> None:
        self.gates.pop(gate.user, None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open.add(writer)
        try:
            await self._one_request(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self.open.discard(writer)

    async def _one_request(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > HEAD_LIMIT:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]
                   if ":" in line]
        gate = self._gate(dict((k.lower(), v) for k, v in headers))
        if gate is None:
            await _answer(writer, 407, [("Proxy-Authenticate", 'Basic realm="moltbot"')])
            return
        if isinstance(gate, str):
            await _answer(writer, 403)
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            shown = f"connection to {host}:{port}"
            upstream = await self._open(gate, host, int(port), shown)
            if upstream is None:
                await _answer(writer, 403)
                return
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await _pipe_both(reader, writer, *upstream)
            return
        url = urlsplit(target)
        shown = f"{method} {url.scheme}://{url.netloc}{url.path}"
        if url.scheme != "http" or not url.hostname:
            gate.refuse(shown, "only http and https are reached")
            await _answer(writer, 403)
            return
        upstream = await self._open(gate, url.hostname, url.port or 80, shown)
        if upstream is None:
            await _answer(writer, 403)
            return
        up_reader, up_writer = upstream
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        kept = [f"{k}: {v}" for k, v in headers if k.lower() not in _DROPPED]
        up_writer.write(("\r\n".join([f"{method} {path} {version}", *kept,
                                      "Connection: close"]) + "\r\n\r\n").encode("latin-1"))
        length = int(dict((k.lower(), v) for k, v in headers).get("content-length", "0") or 0)
        if length:
            up_writer.write(await reader.readexactly(length))
        await up_writer.drain()
        try:
            await _copy(up_reader, writer)
        finally:
            up_writer.close()

    def _gate(self, headers: dict[str, str]) -> Gate | str | None:
        """The call's gate by its credentials; None when there are none (ask for them), a
        string when they are wrong."""
        given = headers.get("proxy-authorization", "")
        if not given.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(given[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return "bad credentials"
        gate = self.gates.get(user)
        if gate is None or not secrets.compare_digest(gate.password, password):
            return "unknown credentials"
        return gate

    async def _open(self, gate: Gate, host: str, port: int,
                    shown: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to `host` if the gate allows it, to the very address it checked."""
        why = gate.reach.refusal(host)
        if why:
            gate.refuse(shown, why)
            return None
        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        except OSError as e:
            gate.refuse(shown, f"{host!r} could not be resolved ({e})")
            return None
        addresses = [str(info[4][0]) for info in found]
        why = gate.reach.address_refusal(host, addresses)
        if why:
            gate.refuse(shown, why)
            return None
        last: Exception | None = None
        for address in dict.fromkeys(addresses):
            try:
                return await asyncio.wait_for(asyncio.open_connection(address, port),
                                              CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as e:
                last = e
        gate.refuse(shown, f"could not connect ({last})")
        return None


async def _answer(writer: asyncio.StreamWriter, status: int,
                  headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
    reason = {403: "Forbidden", 407: "Proxy Authentication Required"}.get(status, "Error")
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers),
             "Content-Length: 0", "Connection: close"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(COPY_CHUNK):
        writer.write(chunk)
        await writer.drain()


async def _pipe_both(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
    """A tunnel: both directions until either side closes."""
    tasks = [asyncio.create_task(_copy(reader, up_writer)),
             asyncio.create_task(_copy(up_reader, writer))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        up_writer.close()
