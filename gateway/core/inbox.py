"""The inbox: files sent with messages, kept under `<workspace>/files/inbox/<YYYY-MM-DD>/`.

A file is streamed to disk as it arrives (never held whole in memory beyond a transport's own
frame), counted against `gateway.max_file_bytes` for itself and `gateway.max_upload_bytes` for
the whole message, hashed on the way (sha256), and written owner-only (0600 in a 0700 folder,
whatever the umask). It is first a hidden `.part` file; `Receipt.finish` gives it its name,
`<msg_id>-<safe name>`. A refused message leaves nothing: `Receipt.discard` removes what was
written, finished or not.

Names are the sender's, so they are made safe: only the last path component (no `../`), no
control characters or characters Windows forbids, no leading dot (no hidden files), at most
`MAX_NAME` bytes with the extension kept.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import mimetypes
import os
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.core.message import Attachment

INBOX = Path("files") / "inbox"
MAX_NAME = 120  # bytes of UTF-8, extension included
MAX_FILES = 20  # files one message may carry
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
# Types the platform's own table may not know (it reads /etc/mime.types where there is one).
_KNOWN_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".csv": "text/csv",
                ".json": "application/json", ".yaml": "application/yaml",
                ".yml": "application/yaml", ".txt": "text/plain", ".log": "text/plain"}


class FileRefused(Exception):
    """A file the gateway will not take: `code` is `bad_request` or `payload_too_large`, the
    message a sentence for the sender that says what to change."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Caps:
    """`gateway.max_file_bytes` and `gateway.max_upload_bytes`, read once per message."""

    file: int
    message: int

    def too_large(self, name: str, size: int | None = None) -> FileRefused:
        said = f" ({size} bytes)" if size else ""
        return FileRefused("payload_too_large", f"The file {name!r}{said} is larger than "
                           f"{self.file} bytes (gateway.max_file_bytes); send a smaller one.")

    def too_much(self) -> FileRefused:
        return FileRefused("payload_too_large", f"The files of this message are larger than "
                           f"{self.message} bytes together (gateway.max_upload_bytes); send "
                           "fewer or smaller files.")


def safe_name(name: str) -> str:
    """The sender's file name as one harmless component (see the module docstring)."""
    name = unicodedata.normalize("NFC", str(name))
    name = re.split(r"[/\\]", name)[-1]
    name = _FORBIDDEN.sub("_", name)
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = name.strip().lstrip(".").rstrip(". ").strip()
    if len(name.encode()) > MAX_NAME:
        stem, dot, suffix = name.rpartition(".")
        suffix = f".{suffix}" if dot and stem and len(suffix.encode()) <= 16 else ""
        stem = name[:len(name) - len(suffix)]
        room = MAX_NAME - len(suffix.encode())
        stem = stem.encode()[:room].decode("utf-8", "ignore").rstrip(". ")
        name = stem + suffix
    return name or "file"


def media_type_of(name: str, given: str | None) -> str:
    """The sender's media type when it is one (without parameters), else guessed from the
    name, else `application/octet-stream`."""
    given = (given or "").split(";")[0].strip().lower()
    if _MEDIA_TYPE.match(given) and given != "application/octet-stream":
        return given
    suffix = Path(name).suffix.lower()
    return _KNOWN_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or \
        "application/octet-stream"


class Inbox:
    def __init__(self, workspace: Path) -> None:
        self.workspace = Path(workspace)

    def receive(self, msg_id: str, caps: Caps) -> Receipt:
        """Begin taking the files of message `msg_id`."""
        return Receipt(self.workspace, msg_id, caps)

    def discard(self, files: tuple[Attachment, ...]) -> None:
        """Remove stored files (a message refused after they arrived)."""
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                (self.workspace / f.path).unlink()


class Receipt:
    """The files of one message as they arrive; `finish` names them, `discard` removes them."""

    def __init__(self, workspace: Path, msg_id: str, caps: Caps) -> None:
        self.workspace = workspace
        self.msg_id = msg_id
        self.caps = caps
        self.folder = INBOX / time.strftime("%Y-%m-%d")
        self.parts: list[Incoming] = []
        self.total = 0

    def open(self, name: str, media_type: str | None) -> Incoming:
        """A stream to write one file into (werkzeug's multipart parser writes into it)."""
        if len(self.parts) >= MAX_FILES:
            raise FileRefused("bad_request", f"A message may carry at most {MAX_FILES} files.")
        folder = self.workspace / self.folder
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        part = folder / f".{self.msg_id}-{secrets.token_hex(4)}.part"
        incoming = Incoming(self, part, safe_name(name), media_type_of(name, media_type))
        self.parts.append(incoming)
        return incoming

    def add_base64(self, name: str, media_type: str | None, data: str) -> None:
        """One file sent inline as base64 (a WebSocket frame's `files`)."""
        shown = safe_name(name)
        if len(data) * 3 // 4 > self.caps.file + 2:
            raise self.caps.too_large(shown)
        try:
            content = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as e:
            raise FileRefused("bad_request", f"The data of file {shown!r} is not valid "
                              "base64; send the file's bytes base64-encoded.") from e
        with self.open(name, media_type) as incoming:
            incoming.write(content)

    def finish(self) -> tuple[Attachment, ...]:
        """Give every file its name; returns them in the order they arrived."""
        files = []
        taken: set[str] = set()
        for incoming in self.parts:
            incoming.close()
            final = f"{self.msg_id}-{incoming.name}"
            n = 1
            while final in taken or (self.workspace / self.folder / final).exists():
                n += 1
                final = f"{self.msg_id}-{n}-{incoming.name}"
            taken.add(final)
            os.replace(incoming.path, self.workspace / self.folder / final)
            incoming.path = self.workspace / self.folder / final
            files.append(Attachment(incoming.name, incoming.media_type, incoming.size,
                                    (self.folder / final).as_posix(),
                                    incoming.digest.hexdigest()))
        return tuple(files)

    def discard(self) -> None:
        """Remove every file of this message, whole or partial."""
        for incoming in self.parts:
            incoming.close()
            with contextlib.suppress(FileNotFoundError):
                incoming.path.unlink()
        self.parts.clear()


class Incoming:
    """One file being written: counted against the caps and hashed as it comes."""

    def __init__(self, receipt: Receipt, path: Path, name: str, media_type: str) -> None:
        self.receipt = receipt
        self.path = path
        self.name = name
        self.media_type = media_type
        self.size = 0
        self.digest = hashlib.sha256()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | getattr(os, "O_CLOEXEC", 0), 0o600)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> int:
        self.size += len(data)
        self.receipt.total += len(data)
        if self.size > self.receipt.caps.file:
            raise self.receipt.caps.too_large(self.name)
        if self.receipt.total > self.receipt.caps.message:
            raise self.receipt.caps.too_much()
        self.digest.update(data)
        self._file.write(data)
        return len(data)

    # what werkzeug's parser and FileStorage call on a container
    def seek(self, offset: int, whence: int = 0) -> int:
        return 0 if self._file.closed else self._file.seek(offset, whence)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Incoming:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
