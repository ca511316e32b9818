"""One intake: what a channel received becomes a `Message` and its `Reply`, the same way for
every channel, whatever carried it (an HTTP request, a WebSocket frame, a platform's webhook,
an MQTT publish, later a platform's long poll).

A channel module is its transport only: it reads its bytes into an `Arrival` (the payload's
fields, the credential, the peer address, files it already streamed into the inbox, anything
its transport found wrong) and calls `Intake.take`, which
1. validates the payload (`core.fields`: text, sender, chat, id; inline base64 `files`),
2. on a bad payload runs the guard chain first and answers with its refusal if it refuses:
   a stranger learns nothing from a `bad_request` (nor from `payload_too_large`),
3. builds the `Message` (its files stored in the inbox) and hands it to the pipeline, whose
   first step is the guard chain,
4. removes the files of a message the pipeline did not store (refused, or a retry answered
   from the store), so a refusal leaves nothing on disk.
Every outcome is a `Reply` with an error code from `message.ERROR_CODES`; the channel maps it
to its own form (an HTTP status, a WebSocket error frame, a platform's body).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.core.entry import Entry
from gateway.core.fields import validate_message_fields
from gateway.core.inbox import Caps, FileRefused, Inbox, Receipt
from gateway.core.message import ClientContext, Message, Reply, new_msg_id
from gateway.guards.chain import Allow, Caller, Challenge
from gateway.models.base import OnDelta

if TYPE_CHECKING:
    from gateway.core.store import Store


@dataclass
class Arrival:
    """What a channel received, free of its transport.

    `payload` is the parsed body: an object with `text`, `sender`, `chat`, `id` and, where the
    channel takes files inline, `files` (`[{"name", "media_type", "data": base64}]`).
    `received` holds files the transport streamed into the inbox itself (HTTP multipart).
    `problem` is what the transport already found wrong (not JSON, a bad header, a body over
    its size), with its code. `client_id` is the transport's own id for the message (HTTP's
    Idempotency-Key), before the payload's `id`. `browser`: a web page sent it (an `Origin`).
    `client_context` is the conversation, model and tools of a client that keeps its own
    (the OpenAI-compatible entry), carried into the `Message` as they are.
    """

    channel: str
    payload: Any
    credential: str | None = None
    peer: str = ""
    browser: bool = False
    problem: str | None = None
    problem_code: str = "bad_request"
    client_id: str | None = None
    received: Receipt | None = None
    takes_files: bool = False  # the channel carries files (HTTP, WebSocket)
    needs_sender: bool = False  # a chat platform speaks for many people: each must be named
    client_context: ClientContext | None = None


class Intake:
    def __init__(self, entry: Entry, inbox: Inbox, store: Store) -> None:
        self.entry = entry
        self.inbox = inbox
        self.store = store

    def caps(self) -> Caps:
        gateway = self.entry.settings.config.gateway
        return Caps(gateway.max_file_bytes, gateway.max_upload_bytes)

    def receive(self) -> Receipt:
        """A receipt for a transport that streams a message's files in itself."""
        return self.inbox.receive(new_msg_id(), self.caps())

    def take(self, arrival: Arrival, on_delta: OnDelta | None = None,
             cancel: threading.Event | None = None) -> Reply:
        """The reply to one arrival: a refusal, or the pipeline's answer."""
        found = self.message(arrival)
        if isinstance(found, Reply):
            return found
        try:
            return self.entry.handle(found, arrival.credential, on_delta, cancel)
        finally:
            self.settle(found)

    def message(self, arrival: Arrival) -> Message | Reply:
        """The arrival as a `Message`, or the `Reply` that refuses it (after the chain, when
        the payload is bad). For a channel that answers later: it hands the message to the
        pipeline itself, then calls `settle`."""
        receipt = arrival.received or self.receive()
        payload = arrival.payload
        try:
            problem = self._problem(arrival, receipt)
        except FileRefused as e:
            problem = (e.code, e.message)
        if problem:
            receipt.discard()
            return self._refuse(arrival, *problem)
        sender = str(payload.get("sender") or "")
        client_id = arrival.client_id or payload.get("id")
        return Message(channel=arrival.channel, sender=sender,
                       chat=str(payload.get("chat") or sender), text=payload.get("text") or "",
                       client_id=str(client_id) if client_id is not None else None,
                       peer=arrival.peer, id=receipt.msg_id, files=receipt.finish(),
                       client_context=arrival.client_context)

    def settle(self, msg: Message) -> None:
        """Remove the files of a message the pipeline did not store: a refusal (or a retry
        answered from the store) leaves nothing on disk."""
        if msg.files and self.store.get_message(msg.id) is None:
            self.inbox.discard(msg.files)

    # -- steps ---------------------------------------------------------------------------
    def _problem(self, arrival: Arrival, receipt: Receipt) -> tuple[str, str] | None:
        if arrival.problem:
            return arrival.problem_code, arrival.problem
        payload = arrival.payload
        inline = payload.get("files") if isinstance(payload, dict) else None
        if inline is not None and not arrival.takes_files:
            return "bad_request", (f"The {arrival.channel} channel does not take files yet; "
                                   'send the message without "files".')
        problem = validate_message_fields(payload, bool(receipt.parts or inline))
        if problem:
            return "bad_request", problem
        if arrival.needs_sender and not str(payload.get("sender") or "").strip():
            return "bad_request", ('"sender" is required: the platform\'s id of the person '
                                   "who wrote.")
        if inline is not None:
            _take_inline(inline, receipt)
        return None

    def _refuse(self, arrival: Arrival, code: str, problem: str) -> Reply:
        """The chain decides first: a caller it refuses gets its refusal, not the problem."""
        verdict = self.entry.admit(Caller(arrival.channel, arrival.peer, arrival.credential,
                                          browser=arrival.browser))
        client_id = arrival.payload.get("id") if isinstance(arrival.payload, dict) else None
        client_id = str(client_id) if isinstance(client_id, str | int) else None
        if isinstance(verdict, Challenge):  # no answer before the payload is right
            return Reply("", arrival.channel, "", verdict.text, client_id=client_id,
                         error="unauthorized")
        if not isinstance(verdict, Allow):
            return Reply("", arrival.channel, "", verdict.message, client_id=client_id,
                         error=verdict.code, retry_after=verdict.retry_after)
        return Reply("", arrival.channel, "", problem, client_id=client_id, error=code)


def _take_inline(files: Any, receipt: Receipt) -> None:
    """`files` of a JSON payload, each `{"name", "media_type"?, "data": base64}`, into the
    inbox; raises FileRefused saying what is wrong."""
    shape = ('"files" must be a list of objects such as {"name": "notes.md", "media_type": '
             '"text/markdown", "data": "<base64>"}.')
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise FileRefused("bad_request", shape)
    for f in files:
        name, media_type, data = f.get("name"), f.get("media_type"), f.get("data")
        if not isinstance(name, str) or not name.strip() or not isinstance(data, str) or \
                not isinstance(media_type, str | None):
            raise FileRefused("bad_request", shape)
        receipt.add_base64(name, media_type, data)
