"""How a chat platform's message is answered through the outbox, the same for every platform
channel that acknowledges a message once it is stored and answers later (Telegram, Feishu).

- The reply row is written `waiting` before the answer (`Outbox.expect_reply`) and filled
  after (`reply_ready`), so a crash between storing the answer and queuing it still sends it
  (`Outbox.recover` fills the row from the stored reply).
- A retry of a message already answered (the platform delivered it again) drops its new row;
  stand-in rows a crash left unfilled are replaced by this answer.
- A refusal (a stranger's pairing code, a bad payload) is queued as the reply; a blocked
  sender gets nothing.
- Messages stored but not answered when the gateway stopped are answered after the next
  start: the platform was acknowledged and will not send them again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from gateway.channels.base import Services
from gateway.core.message import Message, Reply

log = logging.getLogger(__name__)

RECOVER_WINDOW = 86400.0  # stored, unanswered messages younger than this are answered at start


def answer_into_outbox(services: Services, msg: Message, credential: str | None,
                       on_stored: Callable[[], None] | None = None) -> None:
    """Answer `msg` (the pipeline; `on_stored` once it is stored) and queue the reply."""
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
    """A refusal's sentence into the outbox (none for a blocked sender)."""
    if refusal.error == "blocked" or not refusal.chat:
        return
    outbox = services.outbox
    msg = Message(channel=channel, sender=refusal.to, chat=refusal.chat, text="",
                  client_id=refusal.client_id, id=refusal.msg_id or "refused")
    outbox.reply_ready(outbox.expect_reply(msg), refusal)


def stored_unanswered(services: Services, channel: str, peer: str) -> Iterator[Message]:
    """The channel's messages stored but not answered (within `RECOVER_WINDOW`)."""
    store = services.store
    for stored, key in store.unanswered(channel, time.time() - RECOVER_WINDOW):
        client_id = key.split(f":{stored.sender}:", 1)[-1]
        log.info("msg_id=%s %s: stored before the gateway stopped; answering it", stored.id,
                 channel)
        yield Message(channel=channel, sender=stored.sender, chat=stored.chat,
                      text=stored.text, client_id=client_id, peer=peer,
                      files=store.files_of(stored.id, "in"))
