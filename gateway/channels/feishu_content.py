"""What a Feishu message says, as plain text: pure functions over `im.message.receive_v1`.

`text` messages are `{"text": "@_user_1 hello"}` with @mentions as placeholders (`mentions`
names them): the bot's own is dropped, others become `@Name`. `post` (rich text) is a title
and paragraphs of elements (`text`, `a`, `at`, `img`, `code_block`, ...), sometimes under a
locale key (`{"zh_cn": {...}}`); it becomes lines of text, links as `text (url)`. Images and
files are named by key for the channel to download through the message resource API.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Resource:
    """A file of the message: downloaded with `GET im/v1/messages/:id/resources/:key`."""

    key: str
    kind: str  # "image" or "file" (the API's `type`)
    name: str


@dataclass
class Content:
    text: str
    resources: list[Resource] = field(default_factory=list)


def mentions_bot(message: dict[str, Any], bot_open_id: str) -> bool:
    return any((m.get("id") or {}).get("open_id") == bot_open_id
               for m in message.get("mentions") or [])


def read(message: dict[str, Any], bot_open_id: str) -> Content:
    """The message's plain text and files."""
    kind = message.get("message_type")
    try:
        body = json.loads(message.get("content") or "{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    names = {m.get("key"): m for m in message.get("mentions") or []}
    message_id = str(message.get("message_id") or "")
    if kind == "text":
        return Content(_mentions(str(body.get("text") or ""), names, bot_open_id))
    if kind == "post":
        return _post(body, names, bot_open_id, message_id)
    if kind == "image" and body.get("image_key"):
        return Content("", [Resource(body["image_key"], "image", f"image-{message_id}.png")])
    if kind in ("file", "audio", "media") and body.get("file_key"):
        name = body.get("file_name") or f"{kind}-{message_id}"
        return Content("", [Resource(body["file_key"], "file", str(name))])
    return Content(f"[a {kind} message the assistant cannot read]")


def _mentions(text: str, names: dict[Any, dict[str, Any]], bot_open_id: str) -> str:
    for key, mention in names.items():
        if not key:
            continue
        ours = (mention.get("id") or {}).get("open_id") == bot_open_id
        text = text.replace(str(key), "" if ours else f"@{mention.get('name') or ''}")
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def _post(body: dict[str, Any], names: dict[Any, dict[str, Any]], bot_open_id: str,
          message_id: str) -> Content:
    if "content" not in body and len(body) == 1:  # {"zh_cn": {...}}
        inner = next(iter(body.values()))
        body = inner if isinstance(inner, dict) else {}
    lines = [str(body["title"])] if body.get("title") else []
    resources: list[Resource] = []
    for paragraph in body.get("content") or []:
        words: list[str] = []
        for element in paragraph if isinstance(paragraph, list) else []:
            tag = element.get("tag")
            if tag in ("text", "md", "code_block"):
                words.append(str(element.get("text") or ""))
            elif tag == "a":
                label, href = element.get("text") or "", element.get("href") or ""
                words.append(f"{label} ({href})" if label and label != href else href)
            elif tag == "at" and element.get("user_id") != bot_open_id:
                who = str(element.get("user_id") or "")  # a mention key, resolved below
                words.append(who if who in names else f"@{element.get('user_name') or who}")
            elif tag == "img" and element.get("image_key"):
                resources.append(Resource(element["image_key"], "image",
                                          f"image-{message_id}-{len(resources) + 1}.png"))
            elif tag == "emotion":
                words.append(f":{element.get('emoji_type')}:")
        line = _mentions("".join(words), names, bot_open_id)
        if line:
            lines.append(line)
    return Content("\n".join(lines), resources)
