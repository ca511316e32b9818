"""A fake Telegram Bot API server (https://core.telegram.org/bots/api) for the Telegram channel.

It answers on 127.0.0.1 as api.telegram.org does, so the channel's real client code is tested
over real HTTP by pointing its `api_base` at `FakeTelegram.api_base`:

- `/bot<token>/<method>`, method names in any case, by GET with a query string or POST with
  JSON, form-urlencoded or multipart/form-data parameters; every answer in the Bot API envelope
  `{"ok": true, "result": ...}` or `{"ok": false, "error_code", "description", "parameters"?}`
  with the HTTP status equal to `error_code`. A wrong token is 401 "Unauthorized", an unknown
  method 404 "Not Found", a body that is not a JSON object 400 "Bad Request: can't parse JSON
  object".
- Updates: `getUpdates` (`offset` confirms: confirmed updates are gone for good, a negative
  offset keeps only the last ones; `limit` 1-100; `timeout` is a real long poll, answered at
  once when updates are queued and otherwise woken by the next one; `allowed_updates` is kept,
  as Telegram keeps it, and filters updates queued after it). A newer getUpdates ends a waiting
  one with 409 "Conflict: terminated by other getUpdates request; make sure that only one bot
  instance is running"; with a webhook set getUpdates answers 409 "Conflict: can't use
  getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
  and setting one ends a waiting poll with 409 "Conflict: terminated by setWebhook request".
  A poll whose client hangs up stops waiting.
- Webhooks: `setWebhook` (url, secret_token, drop_pending_updates, allowed_updates,
  max_connections), `deleteWebhook` (drop_pending_updates), `getWebhookInfo`. Updates are
  POSTed in order, one at a time, with `X-Telegram-Bot-Api-Secret-Token`; a non-2xx answer or
  a failed connection is retried after `webhook_retry_delays` and the update is dropped after
  the last try ("give up after a reasonable amount of attempts"), with `last_error_message`
  such as "Wrong response from the webhook: 500 Internal Server Error". A JSON answer naming a
  `method` is executed, as the docs allow.
- Messages: `getMe`, `sendMessage` (parse_mode HTML / MarkdownV2 / Markdown checked as
  Telegram checks them, see `parse_html`, `parse_markdown_v2`, `parse_markdown`;
  `reply_parameters` or `reply_to_message_id`; `reply_markup` kept), `editMessageText`,
  `deleteMessage`, `sendChatAction`, `setMyCommands` / `getMyCommands`, `sendDocument`,
  `sendPhoto`, `sendVoice` (a multipart upload, an `attach://` name, a known file_id or an
  http(s) URL), `getFile`, and the download URL `/file/bot<token>/<file_path>`.
- Errors as Telegram words them: 400 "Bad Request: chat not found", "message text is empty",
  "message is too long" (over 4096 characters of the text the user sees, after entity
  parsing), "message caption is too long" (1024), "can't parse entities: ...", "message to be
  replied not found", "wrong parameter action in request", "there is no document in the
  request", "wrong file identifier/HTTP URL specified", "invalid file_id"; 403 "Forbidden: bot
  was blocked by the user" for a chat a test blocked; 429 "Too Many Requests: retry after N"
  with `parameters.retry_after` when a test switches rate limiting on.

The test's side: `user_says`, `user_sends_photo` / `_document` / `_voice` queue updates;
`sent`, `actions`, `calls`, `webhook_deliveries` record what the bot did; `wait_for_sent`,
`wait_for_pollers`, `wait_for` wait on events (never a sleep loop); `fail_next`, `rate_limit`,
`block_chat`, `hang_getupdates`, `set_webhook_externally` inject trouble.

Left out (answered 404 "Not Found" like any unknown method, or simplified): inline mode,
callback queries (a test can still queue one with `push_update`), payments, stickers, games,
polls, albums (sendMediaGroup), forwarding and copying, chat administration, business and
forum topics, the `certificate` and `ip_address` of a webhook, message reactions; webhooks may
use plain http and any port (Telegram wants HTTPS on 443, 80, 88 or 8443); messages are not
trimmed of surrounding white space and get no url/hashtag entities of their own (only
bot_command and mention are derived); a photo's smaller size serves the original bytes; the
flood limits themselves are not modelled (a test switches 429 on).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import mimetypes
import re
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

__all__ = [
    "DEFAULT_TOKEN",
    "Call",
    "EntityParseError",
    "FakeTelegram",
    "Pollers",
    "Sent",
    "StoredFile",
    "Upload",
    "WebhookDelivery",
    "parse_html",
    "parse_markdown",
    "parse_markdown_v2",
]

DEFAULT_TOKEN = "123456789:AAFakeTelegramTokenForMoltbotTests"
MAX_TEXT = 4096  # characters of a message's text after entity parsing
MAX_CAPTION = 1024
MAX_DOWNLOAD = 20 * 1024 * 1024  # getFile: "bots can download files of up to 20MB in size"
FIRST_UPDATE_ID = 100_000_001
CHAT_ACTIONS = frozenset({
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note",
    "upload_video_note",
})
# Update kinds an empty (default) allowed_updates leaves out.
NOT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
POLL_CONFLICT = ("Conflict: terminated by other getUpdates request; make sure that only one bot "
                 "instance is running")
WEBHOOK_ACTIVE = ("Conflict: can't use getUpdates method while webhook is active; use "
                  "deleteWebhook to delete the webhook first")
ENDED_BY_WEBHOOK = "Conflict: terminated by setWebhook request"
NOT_MODIFIED = ("message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message")
DEFAULT_DESCRIPTIONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                        404: "Not Found", 409: "Conflict", 500: "Internal Server Error",
                        502: "Bad Gateway"}


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An answer `{"ok": false, ...}` with this HTTP status."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def envelope(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"ok": False, "error_code": self.code,
                                  "description": self.description}
        if self.retry_after is not None:
            answer["parameters"] = {"retry_after": self.retry_after}
        return answer


def bad(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


def too_many(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)


class _Abandon(Exception):
    """The request gets no answer: its client left, or the fake is stopping."""


# --------------------------------------------------------------------------- formatting


class EntityParseError(ValueError):
    """Markup Telegram refuses; str() is the part after "can't parse entities: "."""


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _Plain:
    """The text the user will see, built piece by piece, with its length in UTF-16 units (the
    unit of entity offsets)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.units = 0

    def add(self, piece: str) -> None:
        self.parts.append(piece)
        self.units += _utf16(piece)

    def since(self, mark: int) -> str:
        return "".join(self.parts[mark:])

    def text(self) -> str:
        return "".join(self.parts)


def _entity(kind: str, offset: int, length: int, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "offset": offset, "length": length, **extra}


def _sorted(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


_MENTION_LINK = re.compile(r"tg:(?://)?user\?id=(\d+)$", re.IGNORECASE)


def _checked_link(url: str) -> str | None:
    """The link a text_link entity gets, or None where Telegram drops the entity: a bare host
    gets http:// and a path of "/", as Telegram normalizes it."""
    if not url or any(c.isspace() for c in url):
        return None
    if url.lower().startswith("tg:"):
        return url
    full = url if "://" in url else "http://" + url
    parts = urlsplit(full)
    host = parts.hostname or ""
    if "." not in host and host != "localhost":
        return None
    rest = full.split("://", 1)[1][len(parts.netloc):]
    return f"{parts.scheme}://{parts.netloc}{rest if rest.startswith('/') else '/' + rest}"


def _link_entity(offset: int, length: int, url: str) -> dict[str, Any] | None:
    mention = _MENTION_LINK.match(url)
    if mention:
        user = {"id": int(mention.group(1)), "is_bot": False, "first_name": ""}
        return _entity("text_mention", offset, length, user=user)
    link = _checked_link(url)
    return None if link is None else _entity("text_link", offset, length, url=link)


# -- HTML style

_HTML_TAGS = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
              "ins": "underline", "s": "strikethrough", "strike": "strikethrough",
              "del": "strikethrough", "tg-spoiler": "spoiler", "span": "spoiler", "a": "link",
              "code": "code", "pre": "pre", "blockquote": "blockquote",
              "tg-emoji": "custom_emoji"}
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_REF = re.compile(r"&(?:#[xX]([0-9a-fA-F]{1,8})|#([0-9]{1,10})|([a-zA-Z]+));?")
SURROGATE_ERROR = ("Text contains invalid Unicode characters after decoding HTML entities, "
                   "check for unmatched surrogate code units")


def _html_ref(text: str, at: int) -> tuple[str, int] | None:
    """The character `&...` at `at` stands for and where it ends; None leaves the '&' as is
    (only &lt; &gt; &amp; &quot; and numeric references are decoded, ';' optional)."""
    ref = _HTML_REF.match(text, at)
    if ref is None:
        return None
    if ref.group(3) is not None:
        char = _HTML_NAMED.get(ref.group(3))
        return None if char is None else (char, ref.end())
    code = int(ref.group(1), 16) if ref.group(1) is not None else int(ref.group(2))
    if code == 0 or code >= 0x10FFFF:
        return None
    if 0xD800 <= code <= 0xDFFF:
        raise EntityParseError(SURROGATE_ERROR)
    return chr(code), ref.end()


@dataclass
class _OpenTag:
    name: str
    attrs: dict[str, str]
    units: int
    mark: int


def parse_html(html: str) -> tuple[str, list[dict[str, Any]]]:
    """parse_mode HTML: the visible text and its entities, or EntityParseError with Telegram's
    words ("Unsupported start tag ...", "Can't find end tag corresponding to start tag ...")."""
    out = _Plain()
    stack: list[_OpenTag] = []
    entities: list[dict[str, Any]] = []
    i, n = 0, len(html)

    def at(pos: int) -> int:  # errors name UTF-8 byte offsets
        return len(html[:pos].encode("utf-8"))

    while i < n:
        char = html[i]
        if char == "&" and (ref := _html_ref(html, i)) is not None:
            out.add(ref[0])
            i = ref[1]
            continue
        if char != "<":
            out.add(char)
            i += 1
            continue
        begin = i
        if html.startswith("</", i):
            if not stack:
                raise EntityParseError(f"Unexpected end tag at byte offset {at(begin)}")
            i += 2
            while i < n and not html[i].isspace() and html[i] != ">":
                i += 1
            name = html[begin + 2:i].lower()
            while i < n and html[i].isspace():
                i += 1
            if i >= n or html[i] != ">":
                raise EntityParseError(f"Unclosed end tag at byte offset {at(begin)}")
            i += 1
            tag = stack.pop()
            if name and name != tag.name:
                raise EntityParseError(
                    f'Unmatched end tag at byte offset {at(begin)}, expected "</{tag.name}>", '
                    f'found "</{name}>"')
            _close_html(tag, out, entities)
            continue
        i += 1
        while i < n and not html[i].isspace() and html[i] != ">":
            i += 1
        if i >= n:
            raise EntityParseError(f"Unclosed start tag at byte offset {at(begin)}")
        name = html[begin + 1:i].lower()
        if name not in _HTML_TAGS:
            raise EntityParseError(f'Unsupported start tag "{name}" at byte offset {at(begin)}')
        attrs, i = _html_attributes(html, i, name, at(begin), at)
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {at(begin)}')
        stack.append(_OpenTag(name, attrs, out.units, len(out.parts)))
    if stack:
        raise EntityParseError(
            f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    for item in entities:
        if item["type"] == "code":
            item.pop("language", None)  # a language counts only for code inside pre
    return out.text(), _sorted(entities)


def _html_attributes(html: str, i: int, tag: str, begin: int,
                     at: Callable[[int], int]) -> tuple[dict[str, str], int]:
    """Reads `name="value"`, `name='value'`, `name=token` and bare `name` attributes up to
    the '>' ending the start tag; returns them and the index after the '>'."""
    attrs: dict[str, str] = {}
    n = len(html)
    while True:
        while i < n and html[i].isspace():
            i += 1
        if i >= n:
            raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
        if html[i] == ">":
            return attrs, i + 1
        start = i
        while i < n and not html[i].isspace() and html[i] not in "=>":
            i += 1
        name = html[start:i]
        if not name:
            raise EntityParseError(
                f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
        while i < n and html[i].isspace():
            i += 1
        if i >= n:
            raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
        if html[i] != "=":
            attrs[name] = ""
            continue
        i += 1
        while i < n and html[i].isspace():
            i += 1
        if i >= n:
            raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
        if html[i] in "'\"":
            quote, value = html[i], []
            i += 1
            while i < n and html[i] != quote:
                ref = _html_ref(html, i) if html[i] == "&" else None
                if ref is not None:
                    value.append(ref[0])
                    i = ref[1]
                else:
                    value.append(html[i])
                    i += 1
            if i >= n:
                raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
            attrs[name] = "".join(value)
            i += 1
            continue
        token = i
        while i < n and ((html[i].isascii() and html[i].isalnum()) or html[i] in ".-"):
            i += 1
        if i >= n or not (html[i].isspace() or html[i] == ">"):
            raise EntityParseError(f"Unexpected end of name token at byte offset {at(token)}")
        attrs[name] = html[token:i].lower()


def _close_html(tag: _OpenTag, out: _Plain, entities: list[dict[str, Any]]) -> None:
    offset, length = tag.units, out.units - tag.units
    if length <= 0:
        return
    kind = _HTML_TAGS[tag.name]
    last = entities[-1] if entities else None
    same_span = last is not None and (last["offset"], last["length"]) == (offset, length)
    if kind == "link":
        made = _link_entity(offset, length, tag.attrs.get("href") or out.since(tag.mark))
        if made is not None:
            entities.append(made)
    elif kind == "custom_emoji":
        emoji_id = tag.attrs.get("emoji-id", "")
        if not emoji_id.isdigit() or int(emoji_id) == 0:
            raise EntityParseError("Invalid custom emoji identifier specified")
        entities.append(_entity("custom_emoji", offset, length, custom_emoji_id=emoji_id))
    elif kind == "code":
        language = tag.attrs.get("class", "")
        language = language[len("language-"):] if language.startswith("language-") else ""
        if same_span and last is not None and last["type"] == "pre" and language:
            last["language"] = language  # <code class="language-x"><pre>..</pre></code>
        else:
            entities.append(_entity("code", offset, length, language=language))
    elif kind == "pre" and same_span and last is not None and last["type"] == "code" \
            and last.get("language"):
        last["type"] = "pre"  # <pre><code class="language-x">..</code></pre>
    elif kind == "blockquote" and "expandable" in tag.attrs:
        entities.append(_entity("expandable_blockquote", offset, length))
    else:
        entities.append(_entity(kind, offset, length))


# -- MarkdownV2 style

_RESERVED = frozenset("_*[]()~`>#+-=|{}.!\n")
_V2_NAMES = {"bold": "Bold", "italic": "Italic", "underline": "Underline",
             "strikethrough": "Strikethrough", "spoiler": "Spoiler", "code": "Code",
             "pre": "Pre", "text_link": "TextUrl", "custom_emoji": "CustomEmoji"}


@dataclass
class _OpenMark:
    kind: str
    byte: int
    units: int
    mark: int
    language: str = ""

    def missing_end(self) -> EntityParseError:
        name = "PreCode" if self.kind == "pre" and self.language else _V2_NAMES[self.kind]
        return EntityParseError(f"Can't find end of {name} entity at byte offset {self.byte}")


@dataclass
class _Quote:
    units: int
    depth: int  # entities opened before the quote; those after it must end inside it
    expandable: bool = False


def _reserved(char: str) -> EntityParseError:
    return EntityParseError(
        f"Character '{char}' is reserved and must be escaped with the preceding '\\'")


def parse_markdown_v2(text: str) -> tuple[str, list[dict[str, Any]]]:
    """parse_mode MarkdownV2: the visible text and its entities, or EntityParseError with
    Telegram's words ("Character '.' is reserved and must be escaped with the preceding '\\'",
    "Can't find end of Bold entity at byte offset 3")."""
    out = _Plain()
    stack: list[_OpenMark] = []
    entities: list[dict[str, Any]] = []
    quote: _Quote | None = None
    line_start = True  # nothing visible but '\r' written on this line yet
    i, n = 0, len(text)

    def at(pos: int) -> int:
        return len(text[:pos].encode("utf-8"))

    def end_quote() -> None:
        nonlocal quote
        assert quote is not None
        if len(stack) > quote.depth:
            raise stack[-1].missing_end()
        if out.units > quote.units:
            kind = "expandable_blockquote" if quote.expandable else "blockquote"
            entities.append(_entity(kind, quote.units, out.units - quote.units))
        quote = None

    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            out.add(text[i + 1])
            i += 2
            line_start = False
            continue
        in_code = bool(stack) and stack[-1].kind in ("code", "pre")
        if (in_code and char != "`") or (not in_code and char not in _RESERVED):
            out.add(char)
            i += 1
            line_start = line_start and char == "\r"
            continue
        if char == "\n":
            out.add(char)
            i += 1
            if quote is not None and text.startswith(">", i):
                i += 1  # the quote goes on
            elif quote is not None:
                end_quote()
            line_start = quote is None
            continue
        if line_start and quote is None and char == ">":
            quote = _Quote(out.units, len(stack))  # "**>" is an empty bold, then this
            i += 1
            line_start = False
            continue
        if quote is not None and len(stack) == quote.depth and text.startswith("||", i) \
                and text[i + 2:].lstrip("\r")[:1] in ("", "\n"):
            quote.expandable = True  # the expandability mark ends the quote's last line
            i += 2
            continue
        if stack and _ends(stack[-1], text, i):
            i = _close_v2(stack.pop(), text, i, out, entities, at)
            continue
        opened, i = _open_v2(text, i, at)
        stack.append(_OpenMark(opened[0], at(opened[1]), out.units, len(out.parts), opened[2]))
    if quote is not None and len(stack) == quote.depth:
        end_quote()
    if stack:
        raise stack[-1].missing_end()
    return out.text(), _sorted(entities)


def _ends(top: _OpenMark, text: str, i: int) -> bool:
    char, after = text[i], text[i + 1:i + 2]
    return {
        "bold": char == "*",
        "italic": char == "_" and after != "_",
        "underline": char == "_" and after == "_",
        "strikethrough": char == "~",
        "spoiler": text.startswith("||", i),
        "code": char == "`",
        "pre": text.startswith("```", i),
        "text_link": char == "]",
        "custom_emoji": char == "]",
    }[top.kind]


def _open_v2(text: str, i: int, at: Callable[[int], int]) -> tuple[tuple[str, int, str], int]:
    """The entity markup at `i` begins: (kind, where, language) and the index after it."""
    char, begin = text[i], i
    if char == "_":
        kind, size = ("underline", 2) if text.startswith("__", i) else ("italic", 1)
        return (kind, begin, ""), i + size
    simple = {"*": "bold", "~": "strikethrough", "[": "text_link"}
    if char in simple:
        return (simple[char], begin, ""), i + 1
    if char == "|" and text.startswith("||", i):
        return ("spoiler", begin, ""), i + 2
    if char == "!" and text.startswith("![", i):
        return ("custom_emoji", begin, ""), i + 2
    if char == "`" and not text.startswith("```", i):
        return ("code", begin, ""), i + 1
    if char == "`":
        language, i = _pre_start(text, i + 3)
        return ("pre", begin, language), i
    raise _reserved(char)


def _pre_start(text: str, i: int) -> tuple[str, int]:
    """After an opening ```: the language named right after it (ended by white space) and
    where the block's text begins (one line break after the opening is skipped)."""
    end = i
    while end < len(text) and not text[end].isspace() and text[end] != "`":
        end += 1
    language = ""
    if end > i and end < len(text) and text[end] != "`":
        language, i = text[i:end], end
    for newline in ("\r\n", "\n\r", "\n", "\r"):
        if text.startswith(newline, i):
            return language, i + len(newline)
    return language, i


def _close_v2(top: _OpenMark, text: str, i: int, out: _Plain, entities: list[dict[str, Any]],
              at: Callable[[int], int]) -> int:
    """Ends `top` at `i`; returns the index after its closing markup (and URL)."""
    offset, length = top.units, out.units - top.units
    size = {"underline": 2, "spoiler": 2, "pre": 3}.get(top.kind, 1)
    i += size
    if top.kind in ("text_link", "custom_emoji"):
        url = None
        if text.startswith("(", i):
            url, i = _v2_url(text, i + 1, top.kind, at)
        if top.kind == "custom_emoji":
            emoji_id = _custom_emoji_id(url)
            if length > 0:
                entities.append(_entity("custom_emoji", offset, length,
                                        custom_emoji_id=emoji_id))
            return i
        made = _link_entity(offset, length, out.since(top.mark) if url is None else url)
        if made is not None and length > 0:
            entities.append(made)
        return i
    if length > 0:
        extra = {"language": top.language} if top.kind == "pre" and top.language else {}
        entities.append(_entity(top.kind, offset, length, **extra))
    return i


def _v2_url(text: str, i: int, kind: str, at: Callable[[int], int]) -> tuple[str, int]:
    start, url = i, []
    while i < len(text) and text[i] != ")":
        if text[i] == "\\" and i + 1 < len(text) and 0 < ord(text[i + 1]) <= 126:
            i += 1
        url.append(text[i])
        i += 1
    if i >= len(text):
        what = "a custom emoji URL" if kind == "custom_emoji" else "a URL"
        raise EntityParseError(f"Can't find end of {what} at byte offset {at(start)}")
    return "".join(url), i + 1


def _custom_emoji_id(url: str | None) -> str:
    if url is None:
        raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
    parts = urlsplit(url)
    if parts.scheme.lower() != "tg":
        raise EntityParseError("Custom emoji URL must have scheme tg")
    if (parts.netloc or parts.path.strip("/")).lower() != "emoji":
        raise EntityParseError('Custom emoji URL must have host "emoji"')
    emoji_id = parse_qs(parts.query).get("id", [""])[0]
    if not emoji_id:
        raise EntityParseError("Custom emoji URL must have an emoji identifier")
    if not emoji_id.isdigit() or emoji_id.startswith("0"):
        raise EntityParseError("Invalid custom emoji identifier specified")
    return emoji_id


# -- legacy Markdown style


def parse_markdown(text: str) -> tuple[str, list[dict[str, Any]]]:
    """parse_mode Markdown (legacy): *bold*, _italic_, `code`, ```pre```, [text](url); only
    '_', '*', '`' and '[' can be escaped; an unclosed one is "Can't find end of the entity
    starting at byte offset N"."""
    out = _Plain()
    entities: list[dict[str, Any]] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\" and text[i + 1:i + 2] in ("_", "*", "`", "["):
            out.add(text[i + 1])
            i += 2
            continue
        if char not in "_*`[":
            out.add(char)
            i += 1
            continue
        begin, end_char = i, "]" if char == "[" else char
        language, pre = "", char == "`" and text.startswith("```", i)
        if pre:
            language, i = _pre_start(text, i + 3)
        else:
            i += 1
        units, mark = out.units, len(out.parts)
        while i < n and (text[i] != end_char or (pre and not text.startswith("```", i))):
            out.add(text[i])
            i += 1
        if i >= n:
            raise EntityParseError("Can't find end of the entity starting at byte offset "
                                   f"{len(text[:begin].encode('utf-8'))}")
        length = out.units - units
        i += 3 if pre else 1
        if char == "[":
            url = out.since(mark)
            if text.startswith("(", i):
                close = text.find(")", i)
                url, i = (text[i + 1:], n) if close < 0 else (text[i + 1:close], close + 1)
            made = _link_entity(units, length, url)
            if made is not None and length > 0:
                entities.append(made)
        elif length > 0:
            kind = {"_": "italic", "*": "bold", "`": "pre" if pre else "code"}[char]
            extra = {"language": language} if language else {}
            entities.append(_entity(kind, units, length, **extra))
    return out.text(), _sorted(entities)


PARSERS: dict[str, Callable[[str], tuple[str, list[dict[str, Any]]]]] = {
    "html": parse_html, "markdownv2": parse_markdown_v2, "markdown": parse_markdown}

_COMMAND = re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/<>@])")
_MENTION = re.compile(r"(?<!\w)@[A-Za-z0-9_]{2,32}(?!\w)")


def derived_entities(text: str) -> list[dict[str, Any]]:
    """The bot_command and mention entities Telegram finds in a message by itself."""
    found = []
    for kind, pattern in (("bot_command", _COMMAND), ("mention", _MENTION)):
        for match in pattern.finditer(text):
            found.append(_entity(kind, _utf16(text[:match.start()]), _utf16(match.group())))
    return _sorted(found)


def _with_derived(text: str, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    taken = [(e["offset"], e["offset"] + e["length"]) for e in entities]
    extra = [e for e in derived_entities(text)
             if all(e["offset"] + e["length"] <= a or e["offset"] >= b for a, b in taken)]
    return _sorted(entities + extra)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart request."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class StoredFile:
    """A file the fake holds: uploaded by the bot or sent by a user; `getFile` gives its
    `file_path`, served under /file/bot<token>/."""

    file_id: str
    file_unique_id: str
    kind: str  # photo, document, voice
    data: bytes
    file_path: str
    file_name: str | None = None
    mime_type: str | None = None

    @property
    def file_size(self) -> int:
        return len(self.data)


@dataclass
class Sent:
    """One message the bot sent (or edited: method "editMessageText"), in order."""

    method: str
    chat_id: int
    text: str | None  # the text or caption as the bot wrote it, markup included
    parse_mode: str | None
    reply_markup: Any
    reply_parameters: dict[str, Any] | None
    files: dict[str, StoredFile]
    message: dict[str, Any]  # the Message Telegram answered with
    params: dict[str, Any]


@dataclass
class Call:
    """One Bot API request, answered or not."""

    method: str
    params: dict[str, Any]
    files: list[str]
    http_method: str
    status: int | None = None
    answer: dict[str, Any] | None = None


@dataclass(frozen=True)
class Pollers:
    in_flight: int  # getUpdates requests waiting now
    started: int  # getUpdates requests that began to poll, in all (hung ones too)


@dataclass
class WebhookDelivery:
    update_id: int
    attempt: int
    status: int | None
    error: str | None
    secret_token: str | None


@dataclass
class _Webhook:
    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class _Chat:
    id: int
    type: str
    title: str | None
    user: dict[str, Any] | None  # the other side of a private chat
    username: str | None = None  # a public group's or channel's

    def json(self) -> dict[str, Any]:
        if self.type == "private" and self.user is not None:
            chat: dict[str, Any] = {"id": self.id, "first_name": self.user["first_name"]}
            for key in ("last_name", "username"):
                if self.user.get(key):
                    chat[key] = self.user[key]
            return {**chat, "type": "private"}
        chat = {"id": self.id, "title": self.title or f"Chat {self.id}"}
        return {**chat, **({"username": self.username} if self.username else {}),
                "type": self.type}


@dataclass
class _Failure:
    status: int
    description: str
    retry_after: int | None


@dataclass
class _Request:
    method: str
    params: dict[str, Any]
    files: dict[str, Upload]
    gone: Callable[[], bool]


# --------------------------------------------------------------------------- parameters


def _text(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    return None if value is None else str(value)


def _number(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _flag(params: dict[str, Any], name: str) -> bool:
    value = params.get(name)
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1")) \
        or (isinstance(value, int) and not isinstance(value, bool) and value != 0)


def _structured(params: dict[str, Any], name: str, what: str) -> Any:
    """A JSON-serialized parameter: an object in a JSON body, a JSON string anywhere else."""
    value = params.get(name)
    if not isinstance(value, str):
        return value
    if value == "":
        return None
    try:
        return json.loads(value)
    except ValueError:
        raise bad(f"can't parse {what} JSON object") from None


def _read_multipart(content_type: str, raw: bytes) -> tuple[dict[str, Any], dict[str, Upload]]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
    params: dict[str, Any] = {}
    files: dict[str, Upload] = {}
    if not message.is_multipart():
        return params, files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is None:
            params[name] = data.decode("utf-8", errors="replace")
        else:
            files[name] = Upload(filename, part.get_content_type(), data)
    return params, files


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG image; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(data) and data[i] == 0xFF:
            marker, size = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                          0xCE, 0xCF):
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return width, height
            i += 2 + size
    return None


# --------------------------------------------------------------------------- HTTP server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True  # restart on the same port

    def __init__(self, address: tuple[str, int], fake: FakeTelegram) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # no getfqdn(): a reverse DNS lookup can stall
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that vanished
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """One request a connection (HTTP/1.0): a stopped fake refuses the next request at once."""

    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
        """Quiet: tests read `calls`, not stderr."""

    def _serve(self) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        raw = self._body()
        try:
            if parts.path.startswith("/file/bot"):
                status, content_type, data = fake._download(parts.path)
            else:
                status, answer = fake._answer(self.command, parts.path, parts.query,
                                              self.headers.get("Content-Type", ""), raw,
                                              self._client_gone)
                content_type, data = "application/json", json.dumps(answer).encode()
        except _Abandon:
            self.close_connection = True
            return
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailer fields
        return b"".join(chunks)

    def _client_gone(self) -> bool:
        """True once the client hung up (its request is fully read, so readable means EOF)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True


# --------------------------------------------------------------------------- the fake


class FakeTelegram:
    """The Bot API of one bot, with a Python control API for tests; see the module docstring.

    `webhook_retry_delays`: seconds before each further try of a failed webhook delivery (one
    try, then one per delay; then the update is dropped); short, for tests: Telegram's own
    schedule is longer. Everything the fake records is guarded by one condition variable:
    every change wakes `wait_for`.
    """

    def __init__(self, token: str = DEFAULT_TOKEN, *, bot_username: str = "moltbot_test_bot",
                 bot_name: str = "Moltbot", port: int = 0,
                 webhook_retry_delays: Iterable[float] = (0.05, 0.1, 0.2, 0.4),
                 webhook_timeout: float = 10.0) -> None:
        if ":" not in token or not token.split(":", 1)[0].isdigit():
            raise ValueError("a bot token is '<bot id>:<secret>'")
        self.token = token
        self.bot = {"id": int(token.split(":", 1)[0]), "is_bot": True, "first_name": bot_name,
                    "username": bot_username}
        self.port = port
        self.webhook_retry_delays = tuple(webhook_retry_delays)
        self.webhook_timeout = webhook_timeout
        self._cond = threading.Condition()
        self._httpd: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = False
        # what the bot did
        self.sent: list[Sent] = []
        self.actions: list[tuple[int, str]] = []
        self.calls: list[Call] = []
        self.deleted: list[tuple[int, int]] = []
        self.commands: list[dict[str, Any]] = []
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.webhook_given_up: list[dict[str, Any]] = []
        # the platform's state
        self.files: dict[str, StoredFile] = {}
        self.urls: dict[str, tuple[bytes, str]] = {}
        self.all_updates: list[dict[str, Any]] = []
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = FIRST_UPDATE_ID
        self._allowed: list[str] = []
        self._chats: dict[int, _Chat] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._next_message_id: dict[int, int] = {}
        self._blocked: set[int] = set()
        self._webhook: _Webhook | None = None
        self._failures: dict[str, list[_Failure]] = {}
        self._rate_limit: tuple[int, frozenset[str] | None, int | None] | None = None
        self._hangs: list[float] = []
        self._poll_owner: int | None = None  # the getUpdates that is the current one
        self._poll_seq = 0
        self._in_flight = 0

    # -- lifecycle

    @property
    def api_base(self) -> str:
        """`http://127.0.0.1:PORT`: what the channel uses instead of https://api.telegram.org."""
        if not self.port:
            raise RuntimeError("FakeTelegram has no port yet: call start() first")
        return f"http://127.0.0.1:{self.port}"

    @property
    def bot_url(self) -> str:
        """`<api_base>/bot<token>`: append "/getMe" and the like."""
        return f"{self.api_base}/bot{self.token}"

    def start(self) -> FakeTelegram:
        """Listen (on the same port again after a stop) and serve in daemon threads."""
        if self._httpd is not None:
            raise RuntimeError("FakeTelegram is already running")
        self._httpd = _Server(("127.0.0.1", self.port), self)
        self.port = self._httpd.server_address[1]
        with self._cond:
            self._stopping = False
        self._threads = [
            threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                             name=f"fake-telegram-{self.port}", daemon=True),
            threading.Thread(target=self._deliver_webhooks, name="fake-telegram-webhook",
                             daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; waiting polls end without an answer, as when a server goes away."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        httpd.shutdown()
        httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the users' side

    def add_chat(self, chat_id: int, chat_type: str = "private", *, title: str | None = None,
                 user: dict[str, Any] | None = None, username: str | None = None
                 ) -> dict[str, Any]:
        """Make a chat known (the bot can write to it) without a message; returns its Chat.
        `username`: a public group's or channel's, for chat_id "@username"."""
        with self._cond:
            chat = self._chat(chat_id, chat_type, title, self._user(chat_id, chat_type, user))
            chat.username = username if chat_type != "private" else None
            return chat.json()

    def user_says(self, chat_id: int, text: str, *, user: dict[str, Any] | None = None,
                  chat_type: str = "private", title: str | None = None,
                  reply_to: int | None = None) -> dict[str, Any]:
        """A user writes `text` in the chat: queues an update; returns its Message. Commands
        (/start, /help@bot) and @mentions get their entities, offsets in UTF-16 units."""
        content: dict[str, Any] = {"text": text}
        if entities := derived_entities(text):
            content["entities"] = entities
        return self._user_message(chat_id, user, chat_type, title, reply_to, content)

    def user_sends_photo(self, chat_id: int, data: bytes, *, caption: str | None = None,
                         user: dict[str, Any] | None = None, chat_type: str = "private",
                         title: str | None = None, reply_to: int | None = None
                         ) -> dict[str, Any]:
        """A user sends a photo (PNG, GIF or JPEG bytes); getFile serves the bytes back."""
        size = _image_size(data)
        if size is None:
            raise ValueError("a photo must be PNG, GIF or JPEG bytes")
        with self._cond:
            stored = self._store("photo", data, None, None)
            content = {"photo": self._photo_sizes(stored, size), **self._caption(caption)}
        return self._user_message(chat_id, user, chat_type, title, reply_to, content)

    def user_sends_document(self, chat_id: int, data: bytes, *, file_name: str = "file.bin",
                            mime_type: str | None = None, caption: str | None = None,
                            user: dict[str, Any] | None = None, chat_type: str = "private",
                            title: str | None = None, reply_to: int | None = None
                            ) -> dict[str, Any]:
        mime = mime_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        with self._cond:
            stored = self._store("document", data, file_name, mime)
            content = {"document": self._document(stored), **self._caption(caption)}
        return self._user_message(chat_id, user, chat_type, title, reply_to, content)

    def user_sends_voice(self, chat_id: int, data: bytes, *, duration: int = 1,
                         mime_type: str = "audio/ogg", caption: str | None = None,
                         user: dict[str, Any] | None = None, chat_type: str = "private",
                         title: str | None = None, reply_to: int | None = None
                         ) -> dict[str, Any]:
        with self._cond:
            stored = self._store("voice", data, None, mime_type)
            content = {"voice": self._voice(stored, duration), **self._caption(caption)}
        return self._user_message(chat_id, user, chat_type, title, reply_to, content)

    def push_update(self, **update: Any) -> dict[str, Any]:
        """Queue any other update, e.g. `push_update(callback_query={...})`; returns it with
        its update_id."""
        with self._cond:
            return self._enqueue(update)

    # -- what the bot did

    @property
    def pollers(self) -> Pollers:
        with self._cond:
            return Pollers(self._in_flight, self._poll_seq)

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not confirmed yet (not delivered to a webhook yet)."""
        with self._cond:
            return list(self._updates)

    def file_bytes(self, file_id: str) -> bytes:
        return self.files[file_id].data

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> bool:
        """Wait (woken by every change, never polling) until `predicate()` is true."""
        with self._cond:
            return bool(self._cond.wait_for(predicate, timeout))

    def wait_for_sent(self, count: int, timeout: float = 5.0) -> list[Sent]:
        """Wait until the bot has sent `count` messages; all of them, in order."""
        if not self.wait_for(lambda: len(self.sent) >= count, timeout):
            raise AssertionError(f"{len(self.sent)} messages sent in {timeout}s, wanted "
                                 f"{count}: {[s.text for s in self.sent]}; last calls: "
                                 f"{[(c.method, c.status) for c in self.calls[-5:]]}")
        with self._cond:
            return list(self.sent)

    def wait_for_pollers(self, in_flight: int, timeout: float = 5.0) -> Pollers:
        """Wait until exactly `in_flight` getUpdates are waiting (0: none any more)."""
        if not self.wait_for(lambda: self._in_flight == in_flight, timeout):
            raise AssertionError(f"{self.pollers} after {timeout}s, wanted {in_flight} in "
                                 "flight")
        return self.pollers

    def wait_for_webhook(self, count: int, timeout: float = 5.0) -> list[WebhookDelivery]:
        """Wait until `count` webhook deliveries were tried (failed ones included)."""
        if not self.wait_for(lambda: len(self.webhook_deliveries) >= count, timeout):
            raise AssertionError(f"{len(self.webhook_deliveries)} webhook deliveries, wanted "
                                 f"{count}")
        with self._cond:
            return list(self.webhook_deliveries)

    # -- trouble a test can cause

    def fail_next(self, method: str, status: int, description: str | None = None,
                  retry_after: int | None = None) -> None:
        """The next call of `method` ("*": of any method) fails with this status. Without a
        description, Telegram's usual one for the status ("Too Many Requests: retry after N"
        for 429, N = retry_after or 1)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        if description is None:
            description = (f"Too Many Requests: retry after {retry_after}" if status == 429
                           else DEFAULT_DESCRIPTIONS.get(status, "Bad Request"))
        with self._cond:
            self._failures.setdefault(method.lower(), []).append(
                _Failure(status, description, retry_after))

    def rate_limit(self, retry_after: int | None, *, methods: Iterable[str] | None = None,
                   times: int | None = None) -> None:
        """Answer 429 "Too Many Requests: retry after N" to `methods` (default: every method
        but getUpdates), for the next `times` calls or until `rate_limit(None)`."""
        with self._cond:
            if retry_after is None:
                self._rate_limit = None
            else:
                names = None if methods is None else frozenset(m.lower() for m in methods)
                self._rate_limit = (retry_after, names, times)

    def block_chat(self, chat_id: int) -> None:
        """The user blocked the bot (or the bot was removed from the group): sends get 403."""
        with self._cond:
            self._blocked.add(chat_id)

    def unblock_chat(self, chat_id: int) -> None:
        with self._cond:
            self._blocked.discard(chat_id)

    def hang_getupdates(self, seconds: float = 3600.0, times: int = 1) -> None:
        """The next `times` getUpdates are read and left unanswered for `seconds` (or until
        their client hangs up, or the fake stops), as over a stalled connection: they take no
        updates and no newer poll ends them; afterwards they answer an empty list."""
        with self._cond:
            self._hangs.extend([seconds] * times)

    def set_webhook_externally(self, url: str, secret_token: str | None = None) -> None:
        """Someone else (another deployment of the bot) set a webhook."""
        self._set_webhook({"url": url, "secret_token": secret_token})

    def add_url(self, url: str, data: bytes, mime_type: str = "application/octet-stream") -> None:
        """Content Telegram finds at `url` when the bot sends a file by URL (the fake fetches
        no other URL but one on 127.0.0.1)."""
        with self._cond:
            self.urls[url] = (data, mime_type)

    # -- requests

    def _answer(self, http_method: str, path: str, query: str, content_type: str, raw: bytes,
                gone: Callable[[], bool]) -> tuple[int, dict[str, Any]]:
        prefix, _, method = path.partition("/")[2].partition("/")
        if not prefix.startswith("bot") or not method or "/" in method:
            return 404, ApiError(404, "Not Found").envelope()
        if prefix[3:] != self.token:
            return 401, ApiError(401, "Unauthorized").envelope()
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        files: dict[str, Upload] = {}
        call = Call(method, params, [], http_method)
        with self._cond:
            self.calls.append(call)
        try:
            mime = content_type.split(";")[0].strip().lower()
            if mime == "application/json" and raw.strip():
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    raise bad("can't parse JSON object")
                params.update(body)
            elif mime == "application/x-www-form-urlencoded":
                params.update(parse_qsl(raw.decode("utf-8", errors="replace"),
                                        keep_blank_values=True))
            elif mime == "multipart/form-data":
                fields, files = _read_multipart(content_type, raw)
                params.update(fields)
            call.files = sorted(files)
            result = self._call(_Request(method, params, files, gone))
            status, answer = 200, {"ok": True, "result": result}
            if isinstance(result, tuple):
                answer = {"ok": True, "result": result[0], "description": result[1]}
        except ApiError as error:
            status, answer = error.code, error.envelope()
        with self._cond:
            call.status, call.answer = status, answer
            self._cond.notify_all()
        return status, answer

    def _call(self, request: _Request) -> Any:
        name = request.method.lower()
        handler = self._methods().get(name)
        if handler is None:
            raise ApiError(404, "Not Found")
        with self._cond:
            failures = self._failures.get(name) or self._failures.get("*")
            if failures:
                failure = failures.pop(0)
                raise ApiError(failure.status, failure.description, failure.retry_after)
            if self._rate_limit is not None:
                retry_after, methods, times = self._rate_limit
                limited = name in methods if methods is not None else name != "getupdates"
                if limited:
                    if times is not None:
                        self._rate_limit = (retry_after, methods, times - 1) if times > 1 \
                            else None
                    raise too_many(retry_after)
        return handler(request)

    def _methods(self) -> dict[str, Callable[[_Request], Any]]:
        return {
            "getme": lambda r: dict(self.bot, can_join_groups=True,
                                    can_read_all_group_messages=False,
                                    supports_inline_queries=False),
            "getupdates": self._get_updates,
            "setwebhook": lambda r: self._set_webhook(r.params),
            "deletewebhook": lambda r: self._delete_webhook(_flag(r.params,
                                                                  "drop_pending_updates")),
            "getwebhookinfo": lambda r: self._webhook_info(),
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "deletemessage": self._delete_message,
            "sendchataction": self._send_chat_action,
            "senddocument": lambda r: self._send_media(r, "document"),
            "sendphoto": lambda r: self._send_media(r, "photo"),
            "sendvoice": lambda r: self._send_media(r, "voice"),
            "getfile": self._get_file,
            "setmycommands": self._set_my_commands,
            "getmycommands": lambda r: list(self.commands),
        }

    # -- getUpdates

    def _get_updates(self, request: _Request) -> list[dict[str, Any]]:
        params = request.params
        with self._cond:
            if self._webhook is not None:
                raise ApiError(409, WEBHOOK_ACTIVE)
            self._poll_seq += 1
            me = self._poll_seq
            self._in_flight += 1
            hang = self._hangs.pop(0) if self._hangs else None
            if hang is None:
                self._poll_owner = me  # a waiting older poll now ends with 409
            self._cond.notify_all()
            try:
                if hang is not None:
                    self._wait(time.monotonic() + hang, lambda: False, request.gone)
                    return []
                self._confirm(_number(params, "offset", 0) or 0)
                allowed = _structured(params, "allowed_updates", "allowed updates")
                if isinstance(allowed, list):
                    self._allowed = [str(kind) for kind in allowed]
                limit = min(max(_number(params, "limit", 100) or 100, 1), 100)
                timeout = max(_number(params, "timeout", 0) or 0, 0)

                def answered() -> bool:
                    if self._poll_owner != me:
                        raise ApiError(409, ENDED_BY_WEBHOOK if self._webhook else POLL_CONFLICT)
                    return bool(self._updates)

                self._wait(time.monotonic() + timeout, answered, request.gone)
                return self._updates[:limit]
            finally:
                self._in_flight -= 1
                self._cond.notify_all()

    def _wait(self, deadline: float, done: Callable[[], bool], gone: Callable[[], bool]) -> None:
        """Hold the condition until `done()`, the deadline, the client leaving, or a stop."""
        while not done():
            if self._stopping or gone():
                raise _Abandon
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # woken by every change; the short bound only notices a client that hung up
            self._cond.wait(min(remaining, 0.05))

    def _confirm(self, offset: int) -> None:
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]

    # -- webhooks

    def _set_webhook(self, params: dict[str, Any]) -> Any:
        url = (_text(params, "url") or "").strip()
        drop = _flag(params, "drop_pending_updates")
        if not url:
            return self._delete_webhook(drop)
        if urlsplit(url).scheme.lower() not in ("http", "https") or not urlsplit(url).hostname:
            raise bad("bad webhook: An HTTPS URL must be provided for webhook")
        secret = _text(params, "secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise bad("secret token contains unallowed characters")
        allowed = _structured(params, "allowed_updates", "allowed updates")
        with self._cond:
            same = self._webhook is not None and self._webhook.url == url
            if isinstance(allowed, list):
                self._allowed = [str(kind) for kind in allowed]
            self._webhook = _Webhook(url, secret or None,
                                     _number(params, "max_connections", 40) or 40,
                                     allowed if isinstance(allowed, list) else None)
            if drop:
                self._updates.clear()
            self._poll_owner = None  # a waiting poll ends with 409
            self._cond.notify_all()
        return True, "Webhook is already set" if same else "Webhook was set"

    def _delete_webhook(self, drop: bool) -> Any:
        with self._cond:
            had = self._webhook is not None
            self._webhook = None
            if drop:
                self._updates.clear()
            self._cond.notify_all()
        return True, "Webhook was deleted" if had else "Webhook is already deleted"

    def _webhook_info(self) -> dict[str, Any]:
        with self._cond:
            hook = self._webhook
            info: dict[str, Any] = {"url": hook.url if hook else "",
                                    "has_custom_certificate": False,
                                    "pending_update_count": len(self._updates)}
            if hook is not None:
                if hook.last_error_date is not None:
                    info["last_error_date"] = hook.last_error_date
                    info["last_error_message"] = hook.last_error_message
                info["max_connections"] = hook.max_connections
                if hook.allowed_updates is not None:
                    info["allowed_updates"] = hook.allowed_updates
            return info

    def _deliver_webhooks(self) -> None:
        """Posts the oldest pending update to the webhook, one at a time, in order."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping
                                    or (self._webhook is not None and bool(self._updates)))
                if self._stopping:
                    return
                hook, update = self._webhook, self._updates[0]
                attempt = 1 + sum(1 for d in self.webhook_deliveries
                                  if d.update_id == update["update_id"])
            assert hook is not None
            status, error, reply = self._post_update(hook, update)
            with self._cond:
                self.webhook_deliveries.append(
                    WebhookDelivery(update["update_id"], attempt, status, error,
                                    hook.secret_token))
                still = self._updates[:1] == [update]
                if error is None and still:
                    self._updates.pop(0)
                elif error is not None:
                    hook.last_error_date, hook.last_error_message = int(time.time()), error
                    if still and attempt > len(self.webhook_retry_delays):
                        self.webhook_given_up.append(self._updates.pop(0))
                self._cond.notify_all()
                if error is not None and attempt <= len(self.webhook_retry_delays):
                    self._pause_delivery(hook, self.webhook_retry_delays[attempt - 1])
            if isinstance(reply, dict) and isinstance(reply.get("method"), str):
                with contextlib.suppress(ApiError):  # the answer to it goes nowhere
                    params = {k: v for k, v in reply.items() if k != "method"}
                    self._call(_Request(reply["method"], params, {}, lambda: False))

    def _pause_delivery(self, hook: _Webhook, seconds: float) -> None:
        """Before the next try: wait, unless the fake stops or the webhook changes."""
        self._cond.wait_for(lambda: self._stopping or self._webhook is not hook, seconds)

    def _post_update(self, hook: _Webhook, update: dict[str, Any]
                     ) -> tuple[int | None, str | None, Any]:
        """(status, error for getWebhookInfo or None when accepted, the JSON answer)."""
        parts = urlsplit(hook.url)
        connection_class = (http.client.HTTPSConnection if parts.scheme == "https"
                            else http.client.HTTPConnection)
        connection = connection_class(parts.hostname or "", parts.port,
                                      timeout=self.webhook_timeout)
        body = json.dumps(update).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        if hook.secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
        try:
            connection.request("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query
                                                              else ""), body, headers)
            response = connection.getresponse()
            data = response.read()
        except TimeoutError:
            return None, "Read timeout expired", None
        except ConnectionRefusedError:
            return None, "Connection refused", None
        except (OSError, http.client.HTTPException) as error:
            return None, str(error) or type(error).__name__, None
        finally:
            connection.close()
        if not 200 <= response.status < 300:
            return (response.status,
                    f"Wrong response from the webhook: {response.status} {response.reason}",
                    None)
        try:
            return response.status, None, json.loads(data) if data.strip() else None
        except ValueError:
            return response.status, None, None

    # -- chats and messages

    def _user(self, chat_id: int, chat_type: str, user: dict[str, Any] | None
              ) -> dict[str, Any]:
        who = {"id": chat_id if chat_type == "private" else 1001, "is_bot": False,
               "first_name": "Alice", "username": "alice"}
        return {**who, **(user or {})}

    def _chat(self, chat_id: int, chat_type: str, title: str | None,
              user: dict[str, Any] | None) -> _Chat:
        if chat_type not in ("private", "group", "supergroup", "channel"):
            raise ValueError(f"unknown chat type {chat_type!r}")
        chat = self._chats.get(chat_id)
        if chat is None or chat.type != chat_type or (title and chat.title != title):
            chat = _Chat(chat_id, chat_type, title, user if chat_type == "private" else None)
            self._chats[chat_id] = chat
        return chat

    def _user_message(self, chat_id: int, user: dict[str, Any] | None, chat_type: str,
                      title: str | None, reply_to: int | None, content: dict[str, Any]
                      ) -> dict[str, Any]:
        with self._cond:
            sender = self._user(chat_id, chat_type, user)
            chat = self._chat(chat_id, chat_type, title, sender)
            replied = None
            if reply_to is not None:
                replied = self._messages.get((chat_id, reply_to))
                if replied is None:
                    raise ValueError(f"no message {reply_to} in chat {chat_id}")
            message = self._new_message(chat, sender, replied, content)
            self._enqueue({"message": message})
            return message

    def _new_message(self, chat: _Chat, sender: dict[str, Any],
                     replied: dict[str, Any] | None, content: dict[str, Any]) -> dict[str, Any]:
        message_id = self._next_message_id.get(chat.id, 1)
        self._next_message_id[chat.id] = message_id + 1
        message: dict[str, Any] = {"message_id": message_id, "from": sender,
                                   "chat": chat.json(), "date": int(time.time())}
        if replied is not None:
            # "will not contain further reply_to_message fields even if it itself is a reply"
            message["reply_to_message"] = {k: v for k, v in replied.items()
                                           if k != "reply_to_message"}
        message.update(content)
        self._messages[(chat.id, message_id)] = message
        return message

    def _enqueue(self, update: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": self._next_update_id, **update}
        self._next_update_id += 1
        self.all_updates.append(update)
        kind = next((k for k in update if k != "update_id"), "")
        allowed = self._allowed
        if (kind in allowed) if allowed else kind not in NOT_BY_DEFAULT:
            self._updates.append(update)
        self._cond.notify_all()
        return update

    def _target(self, params: dict[str, Any]) -> _Chat:
        value = params.get("chat_id")
        if value is None or value == "":
            raise bad("chat_id is empty")
        chat_id: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            chat_id = value
        elif isinstance(value, str) and value.strip().startswith("@"):
            name = value.strip()[1:].lower()
            chat_id = next((c.id for c in self._chats.values()
                            if c.username and c.username.lower() == name), None)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                chat_id = int(value.strip())
        if chat_id is None or chat_id not in self._chats:
            raise bad("chat not found")
        return self._chats[chat_id]

    def _check_blocked(self, chat: _Chat) -> None:
        if chat.id in self._blocked:
            raise ApiError(403, {
                "private": "Forbidden: bot was blocked by the user",
                "group": "Forbidden: bot was kicked from the group chat",
                "supergroup": "Forbidden: bot was kicked from the supergroup chat",
            }.get(chat.type, "Forbidden: bot is not a member of the channel chat"))

    def _formatted(self, params: dict[str, Any], field_name: str, entities_name: str
                   ) -> tuple[str, list[dict[str, Any]]]:
        """The text (or caption) as the user will see it, and its entities."""
        text = _text(params, field_name) or ""
        given = _structured(params, entities_name, "entities")
        if isinstance(given, list):
            return text, [e for e in given if isinstance(e, dict)]
        mode = (_text(params, "parse_mode") or "").strip().lower()
        if not mode:
            return text, []
        parser = PARSERS.get(mode)
        if parser is None:
            raise bad("unsupported parse_mode")
        try:
            return parser(text)
        except EntityParseError as error:
            raise bad(f"can't parse entities: {error}") from None

    def _reply_target(self, chat: _Chat, params: dict[str, Any]
                      ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(the message replied to, the reply parameters as given, normalized)."""
        reply = _structured(params, "reply_parameters", "reply parameters")
        if not isinstance(reply, dict):
            message_id = _number(params, "reply_to_message_id")
            if message_id is None:
                return None, None
            reply = {"message_id": message_id}
            if "allow_sending_without_reply" in params:
                reply["allow_sending_without_reply"] = _flag(params,
                                                             "allow_sending_without_reply")
        where = _number(reply, "chat_id", chat.id)
        replied = self._messages.get((where or chat.id, _number(reply, "message_id", 0) or 0))
        if replied is None and not _flag(reply, "allow_sending_without_reply"):
            raise bad("message to be replied not found")
        return replied, reply

    def _bot_message(self, request: _Request, chat: _Chat, content: dict[str, Any],
                     text: str | None, files: dict[str, StoredFile]) -> dict[str, Any]:
        """Checks the reply and the recipient, then records and returns the new message."""
        params = request.params
        replied, reply = self._reply_target(chat, params)
        markup = _structured(params, "reply_markup", "reply keyboard markup")
        if markup is not None and not isinstance(markup, dict):
            raise bad("can't parse reply keyboard markup JSON object")
        self._check_blocked(chat)
        if markup is not None:
            content["reply_markup"] = markup
        message = self._new_message(chat, self.bot, replied, content)
        self.sent.append(Sent(request.method, chat.id, text, _text(params, "parse_mode"),
                              markup, reply, files, dict(message), dict(params)))
        self._cond.notify_all()
        return dict(message)

    def _send_message(self, request: _Request) -> dict[str, Any]:
        params = request.params
        plain, entities = self._formatted(params, "text", "entities")
        with self._cond:
            chat = self._target(params)
            if not plain.strip():
                raise bad("message text is empty")
            if len(plain) > MAX_TEXT:
                raise bad("message is too long")
            content: dict[str, Any] = {"text": plain}
            if all_entities := _with_derived(plain, entities):
                content["entities"] = all_entities
            return self._bot_message(request, chat, content, _text(params, "text"), {})

    def _edit_message_text(self, request: _Request) -> dict[str, Any]:
        params = request.params
        if params.get("inline_message_id"):
            raise bad("inline messages are not supported by this fake")
        plain, entities = self._formatted(params, "text", "entities")
        with self._cond:
            chat = self._target(params)
            message_id = _number(params, "message_id")
            if message_id is None:
                raise bad("message identifier is not specified")
            message = self._messages.get((chat.id, message_id))
            if message is None:
                raise bad("message to edit not found")
            if message["from"]["id"] != self.bot["id"]:
                raise bad("message can't be edited")
            if not plain.strip():
                raise bad("message text is empty")
            if len(plain) > MAX_TEXT:
                raise bad("message is too long")
            markup = _structured(params, "reply_markup", "reply keyboard markup")
            entities = _with_derived(plain, entities)
            if (plain, entities, markup) == (message.get("text"), message.get("entities", []),
                                             message.get("reply_markup")):
                raise bad(NOT_MODIFIED)
            self._check_blocked(chat)
            message.update(text=plain, edit_date=int(time.time()))
            message.pop("entities", None)
            message.pop("reply_markup", None)
            if entities:
                message["entities"] = entities
            if markup is not None:
                message["reply_markup"] = markup
            self.sent.append(Sent(request.method, chat.id, _text(params, "text"),
                                  _text(params, "parse_mode"), markup, None, {}, dict(message),
                                  dict(params)))
            self._cond.notify_all()
            return dict(message)

    def _delete_message(self, request: _Request) -> bool:
        with self._cond:
            chat = self._target(request.params)
            message_id = _number(request.params, "message_id", 0) or 0
            if self._messages.pop((chat.id, message_id), None) is None:
                raise bad("message to delete not found")
            self.deleted.append((chat.id, message_id))
            self._cond.notify_all()
            return True

    def _send_chat_action(self, request: _Request) -> bool:
        with self._cond:
            chat = self._target(request.params)
            action = _text(request.params, "action") or ""
            if action not in CHAT_ACTIONS:
                raise bad("wrong parameter action in request")
            self._check_blocked(chat)
            self.actions.append((chat.id, action))
            self._cond.notify_all()
            return True

    def _set_my_commands(self, request: _Request) -> bool:
        commands = _structured(request.params, "commands", "bot commands")
        if not isinstance(commands, list) or not all(
                isinstance(c, dict) and {"command", "description"} <= set(c) for c in commands):
            raise bad("can't parse bot commands JSON object")
        with self._cond:
            self.commands = [dict(c) for c in commands]
            return True

    # -- files

    def _store(self, kind: str, data: bytes, file_name: str | None, mime_type: str | None
               ) -> StoredFile:
        number = len(self.files) + 1
        file_id = "AgAD" + base64.urlsafe_b64encode(
            f"fake-telegram:{kind}:{number}".encode()).decode().rstrip("=")
        extension = {"photo": ".jpg", "voice": ".oga"}.get(kind) or (
            mimetypes.guess_extension(mime_type or "") or "")
        if file_name and "." in file_name:
            extension = "." + file_name.rsplit(".", 1)[1]
        if kind == "photo" and data.startswith(b"\x89PNG"):
            extension = ".png"
        elif kind == "photo" and data.startswith(b"GIF8"):
            extension = ".gif"
        folder = {"photo": "photos", "document": "documents", "voice": "voice"}[kind]
        stored = StoredFile(file_id, f"AQAD{number:06d}", kind, data,
                            f"{folder}/file_{number}{extension}", file_name, mime_type)
        self.files[file_id] = stored
        return stored

    def _photo_sizes(self, stored: StoredFile, size: tuple[int, int]) -> list[dict[str, Any]]:
        width, height = size
        full = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_size": stored.file_size, "width": width, "height": height}
        if max(width, height) <= 90:
            return [full]
        scale = 90 / max(width, height)
        thumb = self._store("photo", stored.data, None, stored.mime_type)
        return [{"file_id": thumb.file_id, "file_unique_id": thumb.file_unique_id,
                 "file_size": thumb.file_size, "width": max(1, round(width * scale)),
                 "height": max(1, round(height * scale))}, full]

    @staticmethod
    def _document(stored: StoredFile) -> dict[str, Any]:
        document = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                    "file_name": stored.file_name, "mime_type": stored.mime_type,
                    "file_size": stored.file_size}
        return {k: v for k, v in document.items() if v is not None}

    @staticmethod
    def _voice(stored: StoredFile, duration: int) -> dict[str, Any]:
        return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "duration": duration, "mime_type": stored.mime_type or "audio/ogg",
                "file_size": stored.file_size}

    @staticmethod
    def _caption(caption: str | None) -> dict[str, Any]:
        if not caption:
            return {}
        entities = derived_entities(caption)
        return {"caption": caption, **({"caption_entities": entities} if entities else {})}

    def _input_file(self, request: _Request, field_name: str) -> tuple[Upload | None,
                                                                       StoredFile | None]:
        """What the bot sends as `field_name`: a new upload, or a file the fake holds."""
        value = request.params.get(field_name)
        if field_name in request.files:
            return request.files[field_name], None
        if isinstance(value, str) and value.startswith("attach://"):
            upload = request.files.get(value[len("attach://"):])
            if upload is None:
                raise bad(f"there is no {field_name} in the request")
            return upload, None
        if not isinstance(value, str) or not value.strip():
            raise bad(f"there is no {field_name} in the request")
        value = value.strip()
        with self._cond:
            if value in self.files:
                return None, self.files[value]
            known = self.urls.get(value)
        if known is not None:
            return Upload(value.rsplit("/", 1)[-1], known[1], known[0]), None
        if urlsplit(value).scheme in ("http", "https"):
            return self._fetch(value), None
        raise bad("wrong file identifier/HTTP URL specified")

    def _fetch(self, url: str) -> Upload:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
            raise bad("failed to get HTTP URL content")
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        try:
            connection.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query
                                                             else ""))
            response = connection.getresponse()
            data = response.read()
        except OSError:
            raise bad("failed to get HTTP URL content") from None
        finally:
            connection.close()
        if response.status != 200:
            raise bad("failed to get HTTP URL content")
        return Upload(parts.path.rsplit("/", 1)[-1] or "file",
                      response.getheader("Content-Type", "application/octet-stream"), data)

    def _send_media(self, request: _Request, kind: str) -> dict[str, Any]:
        params = request.params
        caption, entities = self._formatted(params, "caption", "caption_entities")
        upload, stored = self._input_file(request, kind)
        size = None
        if upload is not None and not upload.data:
            raise bad("file must be non-empty")
        if kind == "photo":
            size = _image_size(upload.data if upload else stored.data if stored else b"")
            if size is None:
                raise bad("IMAGE_PROCESS_FAILED")
        with self._cond:
            chat = self._target(params)
            if len(caption) > MAX_CAPTION:
                raise bad("message caption is too long")
            if upload is not None:
                mime = (upload.content_type if upload.content_type not in
                        ("", "application/octet-stream", "text/plain") else None) \
                    or mimetypes.guess_type(upload.filename)[0] or "application/octet-stream"
                stored = self._store(kind, upload.data,
                                     upload.filename if kind == "document" else None,
                                     mime if kind != "photo" else None)
            assert stored is not None
            if kind == "photo":
                assert size is not None
                content: dict[str, Any] = {"photo": self._photo_sizes(stored, size)}
            elif kind == "voice":
                content = {"voice": self._voice(stored, _number(params, "duration", 0) or 0)}
            else:
                content = {"document": self._document(stored)}
            if caption:
                content["caption"] = caption
                if all_entities := _with_derived(caption, entities):
                    content["caption_entities"] = all_entities
            return self._bot_message(request, chat, content, _text(params, "caption"),
                                     {kind: stored})

    def _get_file(self, request: _Request) -> dict[str, Any]:
        with self._cond:
            stored = self.files.get((_text(request.params, "file_id") or "").strip())
            if stored is None:
                raise bad("invalid file_id")
            if stored.file_size > MAX_DOWNLOAD:
                raise bad("file is too big")
            return {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                    "file_size": stored.file_size, "file_path": stored.file_path}

    def _download(self, path: str) -> tuple[int, str, bytes]:
        token, _, file_path = path[len("/file/bot"):].partition("/")
        if token != self.token:
            return 401, "application/json", json.dumps(
                ApiError(401, "Unauthorized").envelope()).encode()
        with self._cond:
            stored = next((f for f in self.files.values() if f.file_path == file_path), None)
        if stored is None:
            return 404, "application/json", json.dumps(
                ApiError(404, "Not Found").envelope()).encode()
        return 200, (stored.mime_type or mimetypes.guess_type(file_path)[0]
                     or "application/octet-stream"), stored.data

