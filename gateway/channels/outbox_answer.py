"""Answering a chat platform's message into the outbox: the reply row first, the answer after.

For a channel that acknowledges the platform at once and answers later (DingTalk; the same
steps as Telegram's `_answer_stored`): the row is written before the answer
(`Outbox.expect_reply`) and filled after it, so a crash between storing the answer and
queuing it still sends it (`Outbox.recover`); a platform's redelivery of a message already
answered (its client id is known) sends nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from gateway.channels.base import Services
from gateway.core.message import Message, Reply, new_msg_id

log = logging.getLogger(__name__)


def answer_into_outbox(services: Services, msg: Message, credential: str | None,
                       on_stored: Callable[[], None] | None = None) -> None:
    """Answer `msg` (already through the intake) and queue the answer for its chat."""
    outbox = services.outbox
    waiting = outbox.expect_reply(msg)
    try:
        reply = services.entry.handle(msg, credential, on_stored=on_stored)
    except Exception:
        outbox.reply_lost(waiting, "the gateway failed answering the message "
                          "(data/logs/error.log)")
        raise
    finally:
        services.intake.settle(msg)
    earlier = [row for row in outbox.rows.for_message(reply.msg_id)
               if row.origin == "reply" and row.id != waiting]
    if any(row.text or row.files for row in earlier):
        outbox.rows.drop(waiting)
        log.info("msg_id=%s %s: already answered; not sent again", reply.msg_id, msg.channel)
        return
    for row in earlier:  # stand-ins a crash left unfilled: this answer is theirs
        outbox.rows.drop(row.id)
    outbox.reply_ready(waiting, reply)


def queue_refusal(services: Services, channel: str, refusal: Reply) -> None:
    """A refusal's sentence (a stranger's pairing code, a bad message) into the outbox; none
    for a blocked sender."""
    if refusal.error == "blocked" or not refusal.chat:
        return
    outbox = services.outbox
    if not refusal.msg_id:  # refused before the store: without an id of its own, two such
        # refusals would fill (and send twice) one outbox row
        refusal = replace(refusal, msg_id=new_msg_id())
    msg = Message(channel=channel, sender=refusal.to, chat=refusal.chat, text="",
                  client_id=refusal.client_id, id=refusal.msg_id)
    outbox.reply_ready(outbox.expect_reply(msg), refusal)
