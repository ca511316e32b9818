"""The console's log pages: older lines of gateway.log / access.log on request (filtered by
keyword, level or msg_id), and a live tail over a WebSocket.

The files are the source (not a handler on the message path), so the tail costs the gateway
nothing while nobody watches, and what the page shows is exactly what is on disk. The tail
WebSocket passes the console's door before the upgrade: a refused handshake gets a plain HTTP
error and never a socket.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from gateway.channels.base import Services
from gateway.web.door import guarded
from gateway.web.errors import error_response

SOURCES = {"gateway": "gateway.log", "access": "access.log"}
LEVELS = ("debug", "info", "warning", "error", "critical")
CHUNK = 256 * 1024  # bytes read per "older lines" request
SCAN_LIMIT = 8 * 1024 * 1024  # bytes of each file searched for one msg_id
TAIL_POLL = 0.25  # seconds between looks at the file while tailing
_TEXT_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ([A-Z]+) ([^:]+): (.*)$")
_MSG_ID = re.compile(r"msg_id[= ](m[0-9a-f]{6,})")


def parse_line(source: str, offset: int, line: str) -> dict[str, Any] | None:
    """One log line as the page shows it; None for a text line that continues the previous
    entry (a traceback), which the caller appends to it."""
    if source == "access":
        try:
            event = json.loads(line)
        except ValueError:
            return None
        return {"offset": offset, "source": source, "time": event.get("@timestamp", ""),
                "level": event.get("log.level", "info"), "logger": event.get("log.logger", ""),
                "message": event.get("message", ""), "msg_id": event.get("moltbot.msg_id")}
    m = _TEXT_LINE.match(line)
    if m is None:
        return None
    found = _MSG_ID.search(m.group(4))
    return {"offset": offset, "source": source, "time": m.group(1).replace(",", "."),
            "level": m.group(2).lower(), "logger": m.group(3), "message": m.group(4),
            "msg_id": found.group(1) if found else None}


def parse_block(source: str, start: int, data: bytes) -> list[dict[str, Any]]:
    """Complete lines of `data` (which begins at byte `start` of the file) as entries."""
    entries: list[dict[str, Any]] = []
    offset = start
    for raw in data.splitlines(keepends=True):
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        entry = parse_line(source, offset, line)
        if entry is not None:
            entries.append(entry)
        elif entries and line:
            entries[-1]["message"] += "\n" + line
        offset += len(raw)
    return entries


def matches(entry: dict[str, Any], keyword: str, level: str) -> bool:
    """`level` is the lowest level shown; `keyword` is matched case-insensitively."""
    if level in LEVELS and entry["level"] in LEVELS and (
            LEVELS.index(entry["level"]) < LEVELS.index(level)):
        return False
    return not keyword or keyword.lower() in (entry["message"] + " " + (
        entry["msg_id"] or "")).lower()


def read_before(path: Path, source: str,
                before: int | None) -> tuple[list[dict[str, Any]], int, int]:
    """The entries of the `CHUNK` bytes before byte `before` (the end when None), starting at
    a line boundary; the offset to ask for next (0: the start of the file was reached); and
    where the read ended (a tail that starts there misses nothing)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [], 0, 0
    end = size if before is None else max(0, min(before, size))
    start = max(0, end - CHUNK)
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(end - start)
    end = start + data.rfind(b"\n") + 1  # a line still being written comes with the tail
    data = data[:end - start]
    if start > 0:  # drop the partial first line
        cut = data.find(b"\n") + 1
        start, data = start + cut, data[cut:]
    return parse_block(source, start, data), start, end


def lines_of(logs: Path, msg_id: str) -> list[dict[str, Any]]:
    """Every line of gateway.log and access.log that names `msg_id`, oldest first."""
    found: list[dict[str, Any]] = []
    for source, name in SOURCES.items():
        path = logs / name
        if not path.exists():
            continue
        size = path.stat().st_size
        start = max(0, size - SCAN_LIMIT)
        with path.open("rb") as f:
            f.seek(start)
            data = f.read()
        found += [e for e in parse_block(source, start, data)
                  if e["msg_id"] == msg_id or msg_id in e["message"]]
    return sorted(found, key=lambda e: e["time"])


def build_console_logs(services: Services, sock: Sock, channel: str) -> Blueprint:
    bp = Blueprint("console_logs", __name__)
    bp.before_request(guarded(services.entry, channel))
    logs = services.reloader.workspace.logs

    def source_path() -> tuple[str, Path] | None:
        source = request.args.get("source", "gateway")
        return (source, logs / SOURCES[source]) if source in SOURCES else None

    @bp.get("/api/v1/logs")
    def older() -> ResponseReturnValue:
        msg_id = request.args.get("msg_id", "").strip()
        if msg_id:
            return jsonify({"lines": lines_of(logs, msg_id)})
        chosen = source_path()
        if chosen is None:
            return error_response("bad_request", f"source must be one of {', '.join(SOURCES)}.")
        raw = request.args.get("before", "")
        before = int(raw) if raw.isdigit() else None
        keyword, level = request.args.get("q", ""), request.args.get("level", "")
        entries, start, end = read_before(chosen[1], chosen[0], before)
        return jsonify({"lines": [e for e in entries if matches(e, keyword, level)],
                        "before": start, "end": end})

    @sock.route("/api/v1/logs/stream", bp=bp)
    def stream(ws: Any) -> None:
        request.environ["moltbot.websocket"] = True  # the server must not write a response
        request.environ["moltbot.release_http_buffer"]()
        chosen = source_path() or ("gateway", logs / SOURCES["gateway"])
        start = request.args.get("from", "")
        tail(ws, *chosen, int(start) if start.isdigit() else None)

    return bp


def tail(ws: Any, source: str, path: Path, start: int | None = None) -> None:
    """Send each new complete line as it lands, from byte `start` (the file's end at connect
    when None or past the end); a rotated (shorter, or replaced) file is followed from its
    start."""
    size, inode = _stat(path)
    offset = size if start is None or start > size else start
    while ws.connected:
        size, now_inode = _stat(path)
        if now_inode != inode or size < offset:
            offset, inode = 0, now_inode
        if size > offset:
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read(size - offset)
            complete = data[:data.rfind(b"\n") + 1]
            if complete:
                try:
                    ws.send(json.dumps({"type": "lines", "lines": parse_block(
                        source, offset, complete)}, ensure_ascii=False))
                except ConnectionClosed:
                    return
                offset += len(complete)
        time.sleep(TAIL_POLL)


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return 0, 0
    return st.st_size, st.st_ino
