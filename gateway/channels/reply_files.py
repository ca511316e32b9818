"""How a reply's files leave on each kind of channel.

A channel that can carry them lists them with a download URL under the token-guarded API
(`GET /api/v1/attachments/<id>`, the same credential as `POST /api/v1/messages`; never a token in a
URL). A channel that cannot says so in the text it sends: a file is never dropped silently.
"""

from __future__ import annotations

from typing import Any

from gateway.core.message import Attachment

DOWNLOAD = "/api/v1/attachments/{}"


def listed(files: tuple[Attachment, ...]) -> list[dict[str, Any]]:
    """The files as a reply body or frame lists them."""
    return [{"id": f.id, "name": f.name, "media_type": f.media_type, "size": f.size,
             "url": DOWNLOAD.format(f.id)} for f in files]


def not_carried(files: tuple[Attachment, ...], channel: str, msg_id: str) -> str:
    """A sentence to append to a reply whose files `channel` cannot carry ("" if none): the
    person learns what was not sent, the owner finds the files by the msg_id (`moltbot
    trace` lists them with their download ids)."""
    if not files:
        return ""
    names = ", ".join(f"{f.name} ({f.size} bytes)" for f in files)
    return (f"\n\n[This answer has {len(files)} file(s) that {channel} cannot carry: "
            f"{names}. They are kept with message {msg_id}.]")
