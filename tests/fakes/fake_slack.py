"""A fake Slack (Web API + Socket Mode + Events API requests) for the Slack channel.

It follows Slack's documented behaviour closely enough that the real slack_sdk, pointed at it
with its `base_url` (the channel's `api_base`), cannot tell:

- Web API (https://docs.slack.dev/reference/methods): `POST /api/<method>` with a bearer
  token, parameters as JSON, form or query string; answers `{"ok": true, ...}` or
  `{"ok": false, "error": ...}` with HTTP 200, except rate limiting: HTTP 429, a
  `Retry-After` header and `"error": "ratelimited"`. A wrong token is `invalid_auth`, none is
  `not_authed`, a bot token where an app-level token is needed (and the reverse) is
  `not_allowed_token_type`. Methods: `auth.test`, `apps.connections.open` (app token;
  returns a `ws://` URL with a one-time ticket), `chat.postMessage` (`text` or
  `markdown_text`, `thread_ts`; `channel_not_found`, `not_in_channel`, `no_text`,
  `msg_too_long` over 12,000 characters of markdown_text), `files.getUploadURLExternal`,
  the upload POST to its URL, `files.completeUploadExternal` (`channel_id`, `thread_ts`).
  A file a person shared is served at its `url_private` only with the bot token.
- Socket Mode (https://docs.slack.dev/apis/events-api/using-socket-mode): on connect a
  `hello`; each event in an `events_api` envelope with an `envelope_id` that the app must
  acknowledge with `{"envelope_id": ...}`; an envelope not acknowledged within
  `ack_timeout` (Slack: 3 s) or whose socket went away is delivered again with
  `retry_attempt` + 1 (on the next socket); `{"type": "disconnect", "reason": ...}` asks the
  app to open a new socket; a ticket works once.
- Events API (https://docs.slack.dev/apis/events-api): `signed_post` sends a request as Slack
  does, signed with v0 (`X-Slack-Signature`, `X-Slack-Request-Timestamp`), optionally with
  `X-Slack-Retry-Num`.

Left out: Block Kit, interactivity, slash commands, OAuth installation, Enterprise Grid,
pagination, the per-method rate tiers (a test switches 429 on with `rate_limit`), message
edits by the app, and TLS (the SDK talks plain http and ws to it).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

BOT_TOKEN = "xoxb-1-fake-bot-token"
APP_TOKEN = "xapp-1-A0FAKE-1-fake-app-token"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM, APP, BOT_USER, BOT_ID = "T0FAKE", "A0FAKE", "U0BOT", "B0BOT"
MAX_MARKDOWN = 12000


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer (a stopped gateway) is not the fake's error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Posted:
    """One `chat.postMessage` the app made."""

    channel: str
    text: str
    thread_ts: str | None
    ts: str
    at: float = field(default_factory=time.perf_counter)  # when the fake took it


@dataclass
class Shared:
    """One file the app uploaded and shared."""

    name: str
    data: bytes
    channel: str
    thread_ts: str | None


@dataclass
class Envelope:
    envelope_id: str
    payload: dict[str, Any]
    retry_attempt: int = 0
    sent_at: float = 0.0
    socket: ServerConnection | None = None

    def frame(self) -> str:
        return json.dumps({"envelope_id": self.envelope_id, "payload": self.payload,
                           "type": "events_api", "accepts_response_payload": False,
                           "retry_attempt": self.retry_attempt,
                           "retry_reason": "timeout" if self.retry_attempt else ""})


@dataclass
class _State:
    posted: list[Posted] = field(default_factory=list)
    shared: list[Shared] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    acks: list[str] = field(default_factory=list)
    deliveries: list[tuple[str, int]] = field(default_factory=list)  # (envelope id, attempt)
    sockets: list[ServerConnection] = field(default_factory=list)
    opened: int = 0  # sockets ever opened
    pending: dict[str, Envelope] = field(default_factory=dict)


class FakeSlack:
    """`with FakeSlack() as slack:`; `slack.api_base` goes into `channels.slack.api_base`."""

    def __init__(self, ack_timeout: float = 3.0) -> None:
        self.bot_token, self.app_token, self.signing_secret = BOT_TOKEN, APP_TOKEN, SIGNING_SECRET
        self.ack_timeout = ack_timeout
        self.state = _State()
        self._cond = threading.Condition()
        self._tickets: set[str] = set()
        self._files: dict[str, tuple[str, bytes]] = {}  # id -> (name, bytes): shared in, up out
        self._uploads: dict[str, tuple[str, bytes | None]] = {}
        self.rate_limited = 0  # the next N chat.postMessage calls answer 429
        self.retry_after = 1
        self.not_in: set[str] = set()  # channels the app was not invited to
        self.refuse_sockets = ""  # apps.connections.open answers this error while set
        self._ts = int(time.time()) * 1_000_000
        self.http = _Server(("127.0.0.1", 0), self._handler())
        self.ws: Server = serve(self._socket, "127.0.0.1", 0, compression=None)
        self._threads = [threading.Thread(target=self.http.serve_forever, daemon=True),
                         threading.Thread(target=self.ws.serve_forever, daemon=True),
                         threading.Thread(target=self._redeliver_late, daemon=True)]
        self._closed = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> FakeSlack:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._closed.set()
        self.drop_sockets()
        self.ws.shutdown()
        self.http.shutdown()
        self.http.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/"

    # -- what the app did --------------------------------------------------------------------
    @property
    def posted(self) -> list[Posted]:
        with self._cond:
            return list(self.state.posted)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> bool:
        """Wait (woken by every change) until `predicate()` is true."""
        with self._cond:
            return bool(self._cond.wait_for(predicate, timeout))

    def wait_for_posted(self, count: int, timeout: float = 20.0) -> list[Posted]:
        if not self.wait_for(lambda: len(self.state.posted) >= count, timeout):
            raise AssertionError(f"{len(self.state.posted)} messages posted in {timeout} s, "
                                 f"wanted {count}: {self.state.posted}; calls "
                                 f"{self.state.calls[-8:]}")
        return self.posted

    def wait_for_sockets(self, count: int = 1, timeout: float = 20.0) -> None:
        """Until `count` sockets are open and greeted."""
        if not self.wait_for(lambda: len(self.state.sockets) >= count, timeout):
            raise AssertionError(f"{len(self.state.sockets)} sockets open after {timeout} s; "
                                 f"calls {self.state.calls[-8:]}")

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- what people do ----------------------------------------------------------------------
    def next_ts(self) -> str:
        with self._cond:
            self._ts += 100
            return f"{self._ts // 1_000_000}.{self._ts % 1_000_000:06d}"

    def message(self, text: str, *, user: str = "U0ALICE", channel: str = "D0ALICE",
                channel_type: str = "im", thread_ts: str | None = None,
                kind: str = "message", **extra: Any) -> dict[str, Any]:
        """An event as Slack words it (`kind` "app_mention" for a mention in a channel)."""
        event = {"type": kind, "user": user, "text": text, "ts": self.next_ts(),
                 "channel": channel, "event_ts": "", "team": TEAM, **extra}
        event["event_ts"] = event["ts"]
        if kind == "message":
            event["channel_type"] = channel_type
        if thread_ts:
            event["thread_ts"] = thread_ts
        return event

    def share_file(self, name: str, data: bytes, mimetype: str) -> dict[str, Any]:
        """A file as it appears in a message's `files`: downloadable with the bot token."""
        file_id = "F" + secrets.token_hex(4).upper()
        self._files[file_id] = (name, data)
        return {"id": file_id, "name": name, "mimetype": mimetype, "size": len(data),
                "url_private": f"{self.url}/files-pri/{TEAM}-{file_id}/{name}",
                "url_private_download": f"{self.url}/files-pri/{TEAM}-{file_id}/download/"
                                        f"{name}"}

    def callback(self, event: dict[str, Any]) -> dict[str, Any]:
        """The `event_callback` body that carries `event`."""
        return {"token": "deprecated-verification-token", "team_id": TEAM, "api_app_id": APP,
                "event": event, "type": "event_callback",
                "event_id": "Ev" + secrets.token_hex(5).upper(),
                "event_time": int(float(event["ts"]))}

    def send_event(self, event: dict[str, Any]) -> Envelope:
        """Deliver `event` over Socket Mode (now if a socket is open, else on the next)."""
        envelope = Envelope(secrets.token_hex(16), self.callback(event))
        with self._cond:
            self.state.pending[envelope.envelope_id] = envelope
        self._push(envelope)
        return envelope

    def redeliver(self, envelope: Envelope) -> None:
        """Deliver an envelope again, as Slack does when it doubts the ack arrived."""
        envelope.retry_attempt += 1
        with self._cond:
            self.state.pending[envelope.envelope_id] = envelope
        self._push(envelope)

    def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Slack's warning that it is about to close the socket, then the close."""
        for sock in list(self.state.sockets):
            with contextlib.suppress(ConnectionClosed):
                sock.send(json.dumps({"type": "disconnect", "reason": reason,
                                      "debug_info": {"host": "applink-fake"}}))
            sock.close(1000, reason)

    def drop_sockets(self) -> None:
        """The network goes: every socket ends without a close frame."""
        for sock in list(self.state.sockets):
            with contextlib.suppress(OSError):
                sock.socket.shutdown(2)
                sock.socket.close()

    def acked(self, envelope: Envelope) -> bool:
        with self._cond:
            return envelope.envelope_id in self.state.acks

    def signed_post(self, url: str, body: dict[str, Any] | str, *, secret: str | None = None,
                    timestamp: int | None = None, retry_num: int | None = None
                    ) -> httpx.Response:
        """POST an Events API request to the app as Slack does, signed (v0)."""
        raw = body if isinstance(body, str) else json.dumps(body)
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        mac = hmac.new((secret or self.signing_secret).encode(), f"v0:{stamp}:{raw}".encode(),
                       hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": stamp,
                   "X-Slack-Signature": f"v0={mac}"}
        if retry_num is not None:
            headers.update({"X-Slack-Retry-Num": str(retry_num),
                            "X-Slack-Retry-Reason": "http_timeout"})
        return httpx.post(url, content=raw.encode(), headers=headers, timeout=10)

    # -- Socket Mode -------------------------------------------------------------------------
    def _push(self, envelope: Envelope) -> None:
        with self._cond:
            sockets = list(self.state.sockets)
        if not sockets:
            return  # delivered when a socket opens
        envelope.socket, envelope.sent_at = sockets[-1], time.monotonic()
        with self._cond:
            self.state.deliveries.append((envelope.envelope_id, envelope.retry_attempt))
        with contextlib.suppress(ConnectionClosed):
            sockets[-1].send(envelope.frame())

    def _socket(self, conn: ServerConnection) -> None:
        query = dict(parse_qsl(urlsplit(conn.request.path if conn.request else "").query))
        with self._cond:
            valid = query.get("ticket") in self._tickets
            self._tickets.discard(query.get("ticket", ""))
        if not valid:
            conn.close(1008, "invalid ticket")
            return
        conn.send(json.dumps({"type": "hello", "num_connections": len(self.state.sockets) + 1,
                              "debug_info": {"host": "applink-fake", "build_number": 1,
                                             "approximate_connection_time": 18060},
                              "connection_info": {"app_id": APP}}))
        with self._cond:
            self.state.sockets.append(conn)
            self.state.opened += 1
            waiting = list(self.state.pending.values())
            self._cond.notify_all()
        for envelope in waiting:  # what the last socket left unacknowledged
            envelope.retry_attempt += 1 if envelope.sent_at else 0
            self._push(envelope)
        try:
            for frame in conn:
                with contextlib.suppress(ValueError):
                    found = json.loads(frame)
                    with self._cond:
                        if isinstance(found, dict) and found.get("envelope_id"):
                            self.state.acks.append(str(found["envelope_id"]))
                            self.state.pending.pop(str(found["envelope_id"]), None)
                            self._cond.notify_all()
        except (ConnectionClosed, OSError):
            pass
        finally:
            with self._cond:
                if conn in self.state.sockets:
                    self.state.sockets.remove(conn)
                self._cond.notify_all()

    def _redeliver_late(self) -> None:
        """Slack's 3 s: an envelope sent and not acknowledged in time is sent again."""
        while not self._closed.wait(0.1):
            now = time.monotonic()
            with self._cond:
                late = [e for e in self.state.pending.values()
                        if e.sent_at and now - e.sent_at > self.ack_timeout]
            for envelope in late:
                self.redeliver(envelope)

    # -- the Web API -------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._download(self)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = urlsplit(self.path).path
                if path.startswith("/upload/"):
                    fake._uploaded(self, path.rsplit("/", 1)[-1], body)
                    return
                if not path.startswith("/api/"):
                    self._send(404, b"not found", "text/plain")
                    return
                method = path[len("/api/"):]
                params = dict(parse_qsl(urlsplit(self.path).query))
                kind = self.headers.get("Content-Type", "")
                if "json" in kind and body:
                    params.update(json.loads(body))
                elif body:
                    params.update(parse_qsl(body.decode()))
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                status, answer, headers = fake._call(method, token or params.get("token", ""),
                                                     params)
                self._send(status, json.dumps(answer).encode(), "application/json", headers)

            def _send(self, status: int, body: bytes, kind: str,
                      headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def _call(self, method: str, token: str, params: dict[str, Any]
              ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._cond:
            self.state.calls.append(method)
            self._cond.notify_all()
        needs = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        if token in (BOT_TOKEN, APP_TOKEN) and token != needs:
            return 200, {"ok": False, "error": "not_allowed_token_type"}, {}
        if token != needs:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        handler = {"auth.test": self._auth_test, "apps.connections.open": self._open,
                   "chat.postMessage": self._post,
                   "files.getUploadURLExternal": self._upload_url,
                   "files.completeUploadExternal": self._complete}.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        return handler(params)

    def _auth_test(self, _params: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        return 200, {"ok": True, "url": "https://fake.slack.com/", "team": "Fake Team",
                     "user": "moltbot", "team_id": TEAM, "user_id": BOT_USER,
                     "bot_id": BOT_ID, "is_enterprise_install": False}, {}

    def _open(self, _params: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.refuse_sockets:
            return 200, {"ok": False, "error": self.refuse_sockets}, {}
        ticket = secrets.token_hex(8)
        with self._cond:
            self._tickets.add(ticket)
        port = self.ws.socket.getsockname()[1]
        return 200, {"ok": True, "url": f"ws://127.0.0.1:{port}/link/?ticket={ticket}"}, {}

    def _post(self, params: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._cond:
            if self.rate_limited > 0:
                self.rate_limited -= 1
                return 429, {"ok": False, "error": "ratelimited"}, {
                    "Retry-After": str(self.retry_after)}
        channel = str(params.get("channel") or "")
        text = params.get("markdown_text") or params.get("text") or ""
        if not channel or channel[0] not in "CDGU":
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        if channel in self.not_in:
            return 200, {"ok": False, "error": "not_in_channel"}, {}
        if not text:
            return 200, {"ok": False, "error": "no_text"}, {}
        if len(params.get("markdown_text") or "") > MAX_MARKDOWN:
            return 200, {"ok": False, "error": "msg_too_long"}, {}
        ts = self.next_ts()
        thread = params.get("thread_ts") or None
        with self._cond:
            self.state.posted.append(Posted(channel, str(text), thread, ts))
            self._cond.notify_all()
        return 200, {"ok": True, "channel": channel, "ts": ts,
                     "message": {"type": "message", "text": text, "user": BOT_USER,
                                 "bot_id": BOT_ID, "ts": ts}}, {}

    def _upload_url(self, params: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not params.get("filename") or not str(params.get("length") or "").isdigit():
            return 200, {"ok": False, "error": "invalid_arguments"}, {}
        file_id = "F" + secrets.token_hex(4).upper()
        self._uploads[file_id] = (str(params["filename"]), None)
        return 200, {"ok": True, "upload_url": f"{self.url}/upload/{file_id}",
                     "file_id": file_id}, {}

    def _uploaded(self, handler: BaseHTTPRequestHandler, file_id: str, body: bytes) -> None:
        found = self._uploads.get(file_id)
        status, text = (404, b"") if found is None else (200, f"OK - {len(body)}".encode())
        if found is not None:
            self._uploads[file_id] = (found[0], body)
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(text)))
        handler.end_headers()
        handler.wfile.write(text)

    def _complete(self, params: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        files = params.get("files")
        files = json.loads(files) if isinstance(files, str) else files
        channel = str(params.get("channel_id") or "")
        if channel in self.not_in:
            return 200, {"ok": False, "error": "not_in_channel"}, {}
        done = []
        for item in files or []:
            name, data = self._uploads.get(item.get("id"), ("", None))
            if data is None:
                return 200, {"ok": False, "error": "file_not_found"}, {}
            done.append({"id": item["id"], "title": item.get("title") or name, "name": name})
            with self._cond:
                self.state.shared.append(Shared(name, data, channel,
                                                params.get("thread_ts") or None))
                self._cond.notify_all()
        return 200, {"ok": True, "files": done}, {}

    def _download(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path).path.split("/")
        file_id = parts[2].split("-", 1)[-1] if len(parts) > 2 else ""
        authorized = handler.headers.get("Authorization") == f"Bearer {BOT_TOKEN}"
        found = self._files.get(file_id)
        if found is None or not authorized:  # Slack shows its login page instead
            body, status = b"<html>sign in</html>", 200 if found else 404
            kind = "text/html"
        else:
            body, status, kind = found[1], 200, "application/octet-stream"
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
