"""Answering a chat platform's message after it was acknowledged: the reply through the outbox.

A platform that redelivers when its callback waits (WeCom after 5 s) or that keeps its own
offset (Telegram) gets its acknowledgement once the message is stored, and the reply leaves
later as an outbox row. The rules, the same for every such channel:
- the reply row is written before the answer (`Outbox.expect_reply`) and filled after it, so a
  crash between storing the answer and queuing it is still sent (`Outbox.recover`);
- a redelivery the store answers from an earlier answer sends nothing again when that answer
  already has its row;
- a refusal's sentence (a stranger's pairing code, a limit) is a reply row too, except a
  blocked sender's: nothing is said to them;
- messages stored but not answered when the gateway stopped are answered after the start:
  the platform will not send them again (they were acknowledged).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from gateway.channels.base import Services
from gateway.core.message import Message, Reply, new_msg_id

log = logging.getLogger(__name__)

RECOVER_WINDOW = 86400.0  # stored, unanswered messages younger than this are answered at start


def answer_into_outbox(services: Services, msg: Message, credential: str | None,
                       on_stored: Callable[[], None] | None = None,
                       on_answered: Callable[[], None] | None = None) -> None:
    """Answer `msg` (the pipeline calls `on_stored` once it is stored) into the outbox."""
    outbox = services.outbox
    waiting = outbox.expect_reply(msg)
    try:
        reply = services.entry.handle(msg, credential, on_stored=on_stored)
    except Exception:
        outbox.reply_lost(waiting, "the gateway failed answering the message "
                          "(data/logs/error.log)")
        raise
    finally:
        if on_answered is not None:
            on_answered()
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
    """A refusal's sentence into the outbox (none for a blocked sender)."""
    if refusal.error == "blocked" or not refusal.chat:
        return
    outbox = services.outbox
    if not refusal.msg_id:  # refused before the store: without an id of its own, two such
        # refusals would fill (and send twice) one outbox row
        refusal = replace(refusal, msg_id=new_msg_id())
    msg = Message(channel=channel, sender=refusal.to, chat=refusal.chat, text="",
                  client_id=refusal.client_id, id=refusal.msg_id)
    outbox.reply_ready(outbox.expect_reply(msg), refusal)


def unanswered(services: Services, channel: str, peer: str) -> list[Message]:
    """`channel`'s messages stored but never answered (the gateway stopped while answering),
    oldest first, as messages to answer again."""
    store = services.store
    found = []
    for stored, key in store.unanswered(channel, time.time() - RECOVER_WINDOW):
        client_id = key.split(f":{stored.sender}:", 1)[-1]
        found.append(Message(channel=channel, sender=stored.sender, chat=stored.chat,
                             text=stored.text, client_id=client_id, peer=peer,
                             files=store.files_of(stored.id, "in")))
        log.info("msg_id=%s %s: stored before the gateway stopped; answering it", stored.id,
                 channel)
    return found
