"""The guide's `enterprise_im` (section 3.3): a generic webhook for any in-house chat platform.

    channels:
      enterprise_im:
        bot_token: "${IM_PLATFORM_TOKEN}"
        webhook_url: "https://your-domain.com/api/im"

`webhook_url` is the public address the platform calls; the gateway serves its path
(`/api/im`). The platform POSTs `{"id", "sender", "chat", "text"}` with `Authorization: Bearer
<bot_token>` (wrong or missing: 401) and gets `{"reply", "msg_id"}` back: a stranger's code is
that reply, a blocked sender gets an empty one. With `reply_url` the gateway answers 202 at once
and POSTs `{"id", "chat", "to", "text", "msg_id", "outbound_id"}` there (with the bot token and
`Idempotency-Key: <outbound_id>`) when the reply is ready; the same POST carries the messages
skills and scripts start (`id` is then null). The platform's `id` makes its retries
idempotent. Every sender passes the stranger policy (`security:`): the bot token proves the
platform, not the person.

Delivery goes through the outbox (`gateway.core.outbox`): the reply's row is stored before the
202, the message is answered on a tracked greenlet (a stop waits for it), and the outbox's
sender calls `deliver`, retrying 429, 5xx and network failures with backoff (Retry-After
honoured) and marking other 4xx failed. A reply stored but not sent when the gateway stopped
or crashed is sent after the next start, with the same outbound id.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from gevent.pool import Group
from pydantic import model_validator

from gateway.channels.base import (
    ChannelOptions,
    PushChannel,
    Services,
    SwitchedOnByConfig,
    WebChannel,
)
from gateway.channels.reply_files import not_carried
from gateway.core.fields import decode_json
from gateway.core.intake import Arrival
from gateway.core.message import Attachment, Message, Reply
from gateway.core.outbound import DeliveryRefused, Outbound, RetryLater, parse_retry_after
from gateway.guards.chain import Allow
from gateway.observe.logs import logged_by_message
from gateway.observe.redact import redact
from gateway.web.credentials import bearer
from gateway.web.door import caller_of, client_address, refusal_response
from gateway.web.errors import error_response

log = logging.getLogger(__name__)

# Failures of the request itself get an HTTP error; failures of the answer are a sentence the
# platform shows to the person (with the code beside it).
_REQUEST_ERRORS = frozenset({"bad_request", "unauthorized", "forbidden", "rate_limited",
                             "payload_too_large", "unavailable", "shutting_down"})
DRAIN = 5.0  # seconds a stop waits for messages answered after their 202 to reach the outbox
RETRIED = frozenset({408, 425, 429})  # and every 5xx: the platform may take it later


class EnterpriseImOptions(SwitchedOnByConfig):
    on_key = "bot_token"  # the guide's snippet has no `enabled:`
    bot_token: str | None = None
    webhook_url: str = "https://your-domain.com/api/im"
    reply_url: str | None = None

    @model_validator(mode="after")
    def _token_when_enabled(self) -> EnterpriseImOptions:
        if self.enabled and not self.bot_token:
            raise ValueError("bot_token is required to switch enterprise_im on, e.g. "
                             'bot_token: "${IM_PLATFORM_TOKEN}"')
        if self.reply_url and urlsplit(self.reply_url).scheme not in ("http", "https"):
            raise ValueError("reply_url must be an http(s) URL")
        return self

    @property
    def path(self) -> str:
        return urlsplit(self.webhook_url).path or "/api/im"


class EnterpriseImChannel(WebChannel, PushChannel):
    name = "enterprise_im"
    Options = EnterpriseImOptions
    chat_platform = True

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        assert isinstance(options, EnterpriseImOptions)
        self.path = options.path  # Flask routes are fixed at start: a new path needs a restart
        blueprint = Blueprint("enterprise_im", __name__)
        blueprint.add_url_rule(self.path, view_func=self._post, methods=["POST"])
        services.app.register_blueprint(blueprint)
        self.later = Group()  # messages answered after their 202

    @property
    def im(self) -> EnterpriseImOptions:
        assert isinstance(self.options, EnterpriseImOptions)
        return self.options

    def stop(self) -> None:
        super().stop()
        self.later.join(timeout=DRAIN)

    def configure(self, options: ChannelOptions) -> None:
        super().configure(options)
        if isinstance(options, EnterpriseImOptions) and options.path != self.path:
            log.warning("channels.enterprise_im.webhook_url now has the path %s; the gateway "
                        "serves %s until it restarts", options.path, self.path)

    def _post(self) -> ResponseReturnValue:
        if not self.running:
            return error_response("unavailable", "enterprise_im is switched off "
                                  "(channels.enterprise_im in config.yaml).")
        data, problem = decode_json(request.get_data(cache=False))
        arrival = Arrival(self.name, data, credential=bearer(request.headers.get("Authorization")),
                          peer=client_address(self.entry, request),
                          browser="Origin" in request.headers, problem=problem,
                          needs_sender=True)
        if not self.im.reply_url:
            reply = self.intake.take(arrival)
            logged_by_message(request.environ, reply.msg_id)
            return self._body(reply)
        found = self.intake.message(arrival)
        if isinstance(found, Reply):
            return self._body(found)
        # the platform itself passes the chain first: a bad token learns nothing more
        verdict = self.entry.admit(caller_of(self.entry, request, self.name, arrival.credential))
        if not isinstance(verdict, Allow):
            return refusal_response(verdict)
        waiting = self.services.outbox.expect_reply(found)  # stored before the 202
        self.later.spawn(self._answer_later, found, arrival.credential, waiting)
        return jsonify({"msg_id": found.id, "status": "accepted"}), 202

    def _body(self, reply: Reply) -> ResponseReturnValue:
        """A reply as the platform gets it: the request's own failures as HTTP errors, the
        answer's (a sentence with its code) and a blocked sender's empty reply as 200. Files
        are not carried yet: the text says so."""
        if reply.error in _REQUEST_ERRORS:
            extra = {"msg_id": reply.msg_id} if reply.msg_id else {}
            return error_response(reply.error or "", reply.text, reply.retry_after, **extra)
        text = reply.text + not_carried(reply.files, self.name, reply.msg_id)
        body: dict[str, Any] = {"reply": "" if reply.error == "blocked" else text,
                                "msg_id": reply.msg_id}
        if reply.error and reply.error != "blocked":
            body["error"] = reply.error
        return jsonify(body)

    def _answer_later(self, msg: Message, credential: str | None, waiting: str) -> None:
        try:
            reply = self.entry.handle(msg, credential)
        except Exception:  # handle() answers every failure; this is a bug, said on the row
            log.exception("msg_id=%s failed after its 202", msg.id)
            self.services.outbox.reply_lost(waiting, "the gateway failed answering the "
                                            "message (data/logs/error.log)")
            return
        self.services.outbox.reply_ready(waiting, reply)

    def push_problem(self) -> str | None:
        if not self.options.enabled:
            return ("enterprise_im is switched off: give channels.enterprise_im a bot_token "
                    "in config.yaml.")
        if not self.im.reply_url:
            return ("enterprise_im sends messages to channels.enterprise_im.reply_url, which "
                    "is not set: add the platform's reply address to config.yaml.")
        return None

    def deliver(self, outbound: Outbound) -> None:
        """POST one outbound message to `reply_url`; the outbound id is the idempotency key.
        Files are not carried yet: the text names them."""
        url, token = self.im.reply_url, self.im.bot_token
        if not url:
            raise DeliveryRefused("channels.enterprise_im.reply_url is not set")
        files = tuple(Attachment(**f) for f in outbound.files)
        text = outbound.text + not_carried(files, self.name, outbound.msg_id or outbound.id)
        payload = {"id": outbound.reply_to, "chat": outbound.chat, "to": outbound.to,
                   "text": text.strip(), "msg_id": outbound.msg_id, "outbound_id": outbound.id}
        try:
            answer = httpx.post(url, json=payload, timeout=10, headers={
                "Authorization": f"Bearer {token}", "Idempotency-Key": outbound.id})
        except httpx.HTTPError as e:
            raise RetryLater(f"{type(e).__name__} reaching {redact(url)}") from e
        status = answer.status_code
        if status in RETRIED or status >= 500:
            raise RetryLater(f"HTTP {status}", parse_retry_after(answer.headers.get(
                "Retry-After")))
        if status >= 400:
            said = redact(answer.text[:200].strip())
            raise DeliveryRefused(f"HTTP {status}" + (f": {said}" if said else ""))
