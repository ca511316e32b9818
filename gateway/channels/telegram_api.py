"""The Telegram Bot API as the Telegram channel uses it: one client per poller or sender, the
API's error envelope as an exception, and replies rendered to Telegram's HTML and split at
its 4,096-character limit.

Clients are made once per start (never per call) and share one SSL context made once per
process: creating an SSL context on the gevent loop was seen blocking it.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import httpx

from gateway.channels.tls import ssl_context

MAX_TEXT = 4096  # characters the user sees (UTF-16 units), after entity parsing


class TelegramError(Exception):
    """`{"ok": false}` from the Bot API (or a body that is not its envelope)."""

    def __init__(self, status: int, description: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {description}")
        self.status = status
        self.description = description
        self.retry_after = retry_after


class BotApi:
    """`<api_base>/bot<token>/<method>`; `call` returns the `result` or raises TelegramError
    (and httpx.HTTPError for the network)."""

    def __init__(self, api_base: str, token: str, timeout: float) -> None:
        self.base = api_base.rstrip("/")
        self.token = token
        self.client = httpx.Client(timeout=timeout, verify=ssl_context() if
                                   self.base.startswith("https:") else False)

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             files: dict[str, tuple[str, Any, str]] | None = None,
             timeout: float | None = None) -> Any:
        url = f"{self.base}/bot{self.token}/{method}"
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        if files:
            data = {k: v if isinstance(v, str) else str(v) for k, v in (params or {}).items()}
            answer = self.client.post(url, data=data, files=files, **extra)
        else:
            answer = self.client.post(url, json=params or {}, **extra)
        try:
            body = answer.json()
        except ValueError:
            raise TelegramError(answer.status_code, "the answer is not JSON") from None
        if not isinstance(body, dict) or not body.get("ok"):
            body = body if isinstance(body, dict) else {}
            retry = (body.get("parameters") or {}).get("retry_after")
            raise TelegramError(int(body.get("error_code") or answer.status_code),
                                str(body.get("description") or "no description"),
                                float(retry) if retry is not None else None)
        return body.get("result")

    def download(self, file_path: str, into: Any) -> None:
        """Stream a file `getFile` named into a writable object."""
        url = f"{self.base}/file/bot{self.token}/{file_path}"
        with self.client.stream("GET", url) as answer:
            if answer.status_code != 200:
                raise TelegramError(answer.status_code, "the file could not be downloaded")
            for chunk in answer.iter_bytes():
                into.write(chunk)


def upload(path: Path, name: str, media_type: str) -> tuple[str, Any, str]:
    return (name, path.open("rb"), media_type)


# -- rendering -----------------------------------------------------------------------------
_CODE_BLOCK = re.compile(r"```[^\n`]*\n?(.*?)```", re.S)
_INLINE = [
    (re.compile(r"`([^`\n]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"), r"<b>\1</b>"),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"<i>\1</i>"),
    (re.compile(r"(?<!\w)_(?=\S)([^_\n]+?)(?<=\S)_(?!\w)"), r"<i>\1</i>"),
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"<s>\1</s>"),
    (re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s\"]+)\)"), r'<a href="\2">\1</a>'),
]


def render(text: str, form: str) -> tuple[str, str | None]:
    """(text, parse_mode) for `channels.telegram.format`: the model's Markdown as Telegram
    HTML, HTML as it is, or plain text."""
    if form == "plain":
        return text, None
    if form == "html":
        return text, "HTML"
    pieces: list[str] = []
    at = 0
    for block in _CODE_BLOCK.finditer(text):
        pieces.append(_inline(text[at:block.start()]))
        pieces.append(f"<pre>{html.escape(block.group(1), quote=False)}</pre>")
        at = block.end()
    pieces.append(_inline(text[at:]))
    return "".join(pieces), "HTML"


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    codes: list[str] = []

    def keep(found: re.Match[str]) -> str:  # code spans are not formatted inside
        codes.append(f"<code>{found.group(1)}</code>")
        return f"\0{len(codes) - 1}\0"

    out = _INLINE[0][0].sub(keep, out)
    for pattern, replacement in _INLINE[1:]:
        out = pattern.sub(replacement, out)
    return re.sub(r"\0(\d+)\0", lambda m: codes[int(m.group(1))], out)


# -- splitting -----------------------------------------------------------------------------
_TOKEN = re.compile(r"<(/?)([a-zA-Z-]+)[^>]*>|&#?\w+;|.", re.S)


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split(text: str, parse_mode: str | None, limit: int = MAX_TEXT) -> list[str]:
    """Pieces of at most `limit` visible characters. HTML is cut between tokens (never inside
    a tag or an escape), each piece closing the tags still open and the next reopening them;
    a cut prefers the last line break of the piece."""
    if parse_mode is None:
        return _split_plain(text, limit)
    pieces: list[str] = []
    current: list[str] = []
    shown = 0
    stack: list[tuple[str, str]] = []  # (name, opening tag)
    last_break: tuple[int, int, list[tuple[str, str]]] | None = None
    for found in _TOKEN.finditer(text):
        token = found.group(0)
        closing, name = found.group(1), found.group(2)
        if name:
            if closing:
                if stack and stack[-1][0] == name.lower():
                    stack.pop()
            else:
                stack.append((name.lower(), token))
            current.append(token)
            continue
        width = _units(html.unescape(token)) if token.startswith("&") else _units(token)
        if shown + width > limit:
            if last_break is not None and last_break[1] > limit // 2:
                index, _, open_then = last_break
                head, tail = current[:index], current[index:]
                pieces.append("".join(head) + _closing(open_then))
                current = [tag for _, tag in open_then] + tail
                shown = sum(_visible(t) for t in current)
            else:
                pieces.append("".join(current) + _closing(stack))
                current = [tag for _, tag in stack]
                shown = 0
            last_break = None
        current.append(token)
        shown += width
        if token == "\n":
            last_break = (len(current), shown, list(stack))
    if "".join(current).strip():
        pieces.append("".join(current))
    return [p for p in pieces if p.strip()]


def unformatted(text: str) -> str:
    """HTML pieces as the plain text the user would have seen: tags dropped (a `<` that
    starts no tag stays), escapes decoded."""
    return html.unescape(_TAG.sub("", text))


_TAG = re.compile(r"</?[a-zA-Z-]+[^>]*>")


def _visible(token: str) -> int:
    if token.startswith("<") and len(token) > 1:
        return 0
    return _units(html.unescape(token)) if token.startswith("&") else _units(token)


def _closing(stack: list[tuple[str, str]]) -> str:
    return "".join(f"</{name}>" for name, _ in reversed(stack))


def _split_plain(text: str, limit: int) -> list[str]:
    pieces: list[str] = []
    while _units(text) > limit:
        cut = limit
        while _units(text[:cut]) > limit:
            cut -= 1
        newline = text.rfind("\n", 0, cut)
        if newline > cut // 2:
            cut = newline + 1
        pieces.append(text[:cut])
        text = text[cut:]
    if text.strip():
        pieces.append(text)
    return pieces
