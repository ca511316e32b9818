"""How a chat platform's message is answered into the outbox, the same for every platform
that acknowledges first and answers later (Telegram, Slack).

The reply's row is written before the answer (`Outbox.expect_reply`) and filled after it, so
a crash between storing the answer and queuing it still sends it (the outbox's start fills
the row). A message the platform delivers again after a restart finds its earlier row filled
and is not sent twice. A message stored but never answered (the gateway stopped in between;
the platform will not send it again: it was acknowledged) is answered after the next start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gevent.event import Event

from gateway.core.message import Message, Reply

if TYPE_CHECKING:
    from gateway.channels.base import Channel

log = logging.getLogger(__name__)

RECOVER_WINDOW = 86400.0  # stored, unanswered messages younger than this are answered at start


def answer_into_outbox(channel: Channel, msg: Message, credential: str | None,
                       on_stored: Callable[[], None] | None = None,
                       answered: Event | None = None) -> None:
    """Answer `msg` into the outbox (`answered` is set once the answer exists)."""
    outbox = channel.services.outbox
    waiting = outbox.expect_reply(msg)
    try:
        reply = channel.entry.handle(msg, credential, on_stored=on_stored)
    except Exception:
        outbox.reply_lost(waiting, "the gateway failed answering the message "
                          "(data/logs/error.log)")
        raise
    finally:
        if answered is not None:
            answered.set()
        channel.intake.settle(msg)
    earlier = [row for row in outbox.rows.for_message(reply.msg_id)
               if row.origin == "reply" and row.id != waiting]
    if any(row.text or row.files for row in earlier):
        outbox.rows.drop(waiting)
        log.info("msg_id=%s %s: already answered; not sent again", reply.msg_id, channel.name)
        return
    for row in earlier:  # stand-ins a crash left unfilled: this answer is theirs
        outbox.rows.drop(row.id)
    outbox.reply_ready(waiting, reply)


def queue_refusal(channel: Channel, refusal: Reply) -> None:
    """A refusal's sentence (a stranger's pairing code) into the outbox; none for a blocked
    sender."""
    if refusal.error == "blocked" or not refusal.chat:
        return
    outbox = channel.services.outbox
    msg = Message(channel=channel.name, sender=refusal.to, chat=refusal.chat, text="",
                  client_id=refusal.client_id, id=refusal.msg_id or "refused")
    outbox.reply_ready(outbox.expect_reply(msg), refusal)


def unanswered(channel: Channel, peer: str) -> list[Message]:
    """The channel's messages stored but not answered when the gateway stopped, to answer
    now (with `answer_into_outbox`)."""
    store = channel.services.store
    found = []
    for stored, key in store.unanswered(channel.name, time.time() - RECOVER_WINDOW):
        client_id = key.split(f":{stored.sender}:", 1)[-1]
        found.append(Message(channel=channel.name, sender=stored.sender, chat=stored.chat,
                             text=stored.text, client_id=client_id, peer=peer,
                             files=store.files_of(stored.id, "in")))
        log.info("msg_id=%s %s: stored before the gateway stopped; answering it", stored.id,
                 channel.name)
    return found
