"""Which Slack events the assistant answers, and what of them it keeps.

The same message can arrive twice over (an `app_mention` and the channel's `message` event,
Slack's redelivery, an Events API retry): its identity is its channel + `ts`, carried as the
message's client id `<channel>:<ts>[:<thread_ts>]`, so the reply knows its thread and a second
arrival is answered once.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

# A person's own messages carry no subtype, or one of these (a file shared with text).
PERSON_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]+))?>")


@dataclass(frozen=True)
class Incoming:
    """One message a person wrote, as the channel hands it to the intake."""

    user: str
    channel: str
    ts: str
    thread_ts: str | None  # where the reply goes; None: the conversation itself (a DM)
    text: str
    files: tuple[dict[str, Any], ...]

    @property
    def client_id(self) -> str:
        return f"{self.channel}:{self.ts}" + (f":{self.thread_ts}" if self.thread_ts else "")


def addressed(event: dict[str, Any], groups: str, bot_user: str | None,
              bot_id: str | None) -> Incoming | None:
    """The message in `event` if the assistant answers it: direct messages always, channel
    messages when they mention the app (`app_mention`) or with `groups: all`; never a bot's
    (its own above all), an edit, a deletion or any other subtype a person did not write."""
    kind = event.get("type")
    if kind not in ("message", "app_mention"):
        return None
    if event.get("bot_id") or event.get("subtype") not in PERSON_SUBTYPES:
        return None
    user = str(event.get("user") or "")
    if not user or user == bot_user or (bot_id and event.get("bot_id") == bot_id):
        return None
    direct = event.get("channel_type") == "im"
    if kind == "message" and not direct and groups != "all":
        return None  # in a channel, the app_mention of the same message is the one answered
    channel, ts = str(event.get("channel") or ""), str(event.get("ts") or "")
    if not channel or not ts:
        return None
    thread = event.get("thread_ts") or (None if direct else ts)
    return Incoming(user, channel, ts, str(thread) if thread else None,
                    readable(without_mention(str(event.get("text") or ""), bot_user)),
                    tuple(f for f in event.get("files") or () if isinstance(f, dict)))


def without_mention(text: str, bot_user: str | None) -> str:
    """The text without the app's own `<@U…>` (all of them; a leading one whoever it names
    while the app's user id is not known yet)."""
    if bot_user:
        text = text.replace(f"<@{bot_user}>", "")
    else:
        text = _MENTION.sub("", text, count=1) if _MENTION.match(text.lstrip()) else text
    return re.sub(r" {2,}", " ", text).strip()


def readable(text: str) -> str:
    """Slack's markup of a person's text as they typed it: links `<url|label>` as
    `label (url)`, and the three characters Slack escapes (`&lt;` `&gt;` `&amp;`)."""
    text = _LINK.sub(_link, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _link(found: re.Match[str]) -> str:
    url, label = found.group(1), found.group(2)
    if not label:
        return str(url)
    if url.endswith(label):  # Slack linked what was typed: an address, a domain
        return str(label if url.startswith("mailto:") else url)
    return f"{label} ({url})"


def reply_place(reply_to: str | None) -> tuple[str | None, str | None]:
    """(ts, thread_ts) of the message a reply answers, from its client id."""
    parts = (reply_to or "").split(":")
    if len(parts) < 2:
        return None, None
    return parts[1], (parts[2] if len(parts) > 2 else None)


class Seen:
    """Messages (channel + ts) taken lately: a redelivered envelope or a second event for the
    same message is acknowledged and dropped. The store's client id catches what is older."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.keys: OrderedDict[str, None] = OrderedDict()

    def first(self, incoming: Incoming) -> bool:
        key = f"{incoming.channel}:{incoming.ts}"
        if key in self.keys:
            return False
        self.keys[key] = None
        if len(self.keys) > self.size:
            self.keys.popitem(last=False)
        return True
