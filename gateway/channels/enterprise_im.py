"""The guide's `enterprise_im` (section 3.3): a generic webhook for any in-house chat platform.

    channels:
      enterprise_im:
        bot_token: "${IM_PLATFORM_TOKEN}"
        webhook_url: "https://your-domain.com/api/im"

`webhook_url` is the public address the platform calls; the gateway serves its path
(`/api/im`). The platform POSTs `{"id", "sender", "chat", "text"}` with `Authorization: Bearer
<bot_token>` (wrong or missing: 401) and gets `{"reply", "msg_id"}` back: a stranger's code is
that reply, a blocked sender gets an empty one. With `reply_url` the gateway answers 202 at once
and POSTs `{"id", "chat", "to", "text", "msg_id"}` there (with the bot token) when the reply is
ready. The platform's `id` makes its retries idempotent. Every sender passes the stranger policy
(`security:`): the bot token proves the platform, not the person.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import model_validator

from gateway.channels.base import ChannelOptions, PushChannel, Services, WebChannel
from gateway.channels.reply_files import not_carried
from gateway.core.fields import decode_json
from gateway.core.intake import Arrival
from gateway.core.message import Message, Reply
from gateway.guards.chain import Allow
from gateway.observe.redact import redact
from gateway.web.credentials import bearer
from gateway.web.door import caller_of, client_address, refusal_response
from gateway.web.errors import error_response

log = logging.getLogger(__name__)

# Failures of the request itself get an HTTP error; failures of the answer are a sentence the
# platform shows to the person (with the code beside it).
_REQUEST_ERRORS = frozenset({"bad_request", "unauthorized", "forbidden", "rate_limited",
                             "payload_too_large", "unavailable", "shutting_down"})
DELIVERY_TRIES = 3


class EnterpriseImOptions(ChannelOptions):
    bot_token: str | None = None
    webhook_url: str = "https://your-domain.com/api/im"
    reply_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _on_when_configured(cls, data: Any) -> Any:
        """The guide's snippet has no `enabled:`: a bot token switches the channel on."""
        if isinstance(data, dict) and "enabled" not in data:
            return {**data, "enabled": bool(data.get("bot_token"))}
        return data

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

    @property
    def im(self) -> EnterpriseImOptions:
        assert isinstance(self.options, EnterpriseImOptions)
        return self.options

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
            return self._body(self.intake.take(arrival))
        found = self.intake.message(arrival)
        if isinstance(found, Reply):
            return self._body(found)
        # the platform itself passes the chain first: a bad token learns nothing more
        verdict = self.entry.admit(caller_of(self.entry, request, self.name, arrival.credential))
        if not isinstance(verdict, Allow):
            return refusal_response(verdict)
        threading.Thread(target=self._answer_later, args=(found, arrival.credential),
                         daemon=True).start()
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

    def _answer_later(self, msg: Message, credential: str | None) -> None:
        reply = self.entry.handle(msg, credential)
        if reply.error == "blocked" or not reply.text:
            return
        self.deliver(reply)

    def deliver(self, reply: Reply) -> None:
        """POST the reply to `reply_url`, trying again with backoff; a failure is logged."""
        url, token = self.im.reply_url, self.im.bot_token
        if not url:
            return
        payload = {"id": reply.client_id, "chat": reply.chat, "to": reply.to,
                   "text": reply.text, "msg_id": reply.msg_id}
        for attempt in range(DELIVERY_TRIES):
            try:
                answer = httpx.post(url, json=payload, timeout=10,
                                    headers={"Authorization": f"Bearer {token}"})
                if answer.status_code < 500:
                    if answer.status_code >= 400:
                        log.warning("msg_id=%s reply_url refused the reply: HTTP %d",
                                    reply.msg_id, answer.status_code)
                    return
                why = f"HTTP {answer.status_code}"
            except httpx.HTTPError as e:
                why = type(e).__name__
            log.warning("msg_id=%s delivering to %s failed (%s), try %d of %d", reply.msg_id,
                        redact(url), why, attempt + 1, DELIVERY_TRIES)
            time.sleep(0.5 * 2 ** attempt)
