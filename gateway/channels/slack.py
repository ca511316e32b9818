"""Slack: an app, by Socket Mode (no public URL needed) or the Events API.

    channels:
      slack:
        bot_token: "${SLACK_BOT_TOKEN}"        # xoxb-...: OAuth & Permissions
        app_token: "${SLACK_APP_TOKEN}"        # xapp-...: Socket Mode (connections:write)
        mode: socket                           # or events (needs signing_secret, a public URL)
        signing_secret: "${keyring:slack_signing_secret}"   # events mode
        callback_path: /api/slack/events       # events mode: the Request URL's path
        api_base: "https://slack.com/api/"     # GovSlack, a proxy, or a test's fake
        groups: mention                        # mention | all

Senders are `slack:<user id>` (each meets the stranger policy: the tokens prove Slack, not
the person); chats are Slack conversation ids. Direct messages are always answered; in
channels the app answers when mentioned (`app_mention`), or every message with `groups: all`,
always in the message's thread. Messages from bots (the app's own above all), edits,
deletions and other subtypes are never answered. Files people share come in (`url_private`
with the bot token); replies leave through the outbox (`deliver`: `files_upload_v2`, then
`chat.postMessage` with `markdown_text`).

The rules that keep it right:
- Ack first, answer later: an envelope (Socket Mode) or request (Events API) is acknowledged
  as soon as its message is stored, never before (a crash in between gets it delivered
  again) and never after the model (Slack redelivers after 3 s).
- Once: a message is known by channel + ts (`slack_events`): a redelivered envelope, an
  Events API retry or the `message` event of an `app_mention` is acknowledged and dropped.
- Socket Mode runs slack_sdk's asyncio client in a child process (`slack_socket`; why: the
  thread rule in ARCHITECTURE.md). A stop or reload ends that process and with it its socket.
- Liveness: Slack's hello and pongs on the socket and every event are evidence; a socket
  silent beyond `stale_after` is stale: the process is restarted once, `channel_stale` fires
  if it stays so.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Any, Literal
from urllib.parse import urlsplit

import gevent
import httpx
from flask import jsonify, request
from flask.typing import ResponseReturnValue
from gevent.event import Event
from pydantic import Field, field_validator, model_validator
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from gateway.channels.answer_later import answer_into_outbox, queue_refusal, unanswered
from gateway.channels.base import (
    ChannelOptions,
    ChannelStatus,
    Services,
    SwitchedOnByConfig,
)
from gateway.channels.liveness import Liveness
from gateway.channels.platform import PlatformChannel
from gateway.channels.platform_state import StateLine
from gateway.channels.slack_events import Incoming, Seen, addressed, reply_place
from gateway.channels.slack_web import NETWORK, SlackWeb, fix_for
from gateway.common.child_link import ChildLink
from gateway.common.options import Duration
from gateway.core.inbox import FileRefused
from gateway.core.intake import Arrival
from gateway.core.message import Message, Reply
from gateway.core.outbound import Outbound, RetryLater
from gateway.skills.hostpool import host_environment
from gateway.web.door import client_address

log = logging.getLogger(__name__)

DRAIN = 5.0
MAX_BACKOFF = 60.0
PROXY_ENV = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy")


class SlackOptions(SwitchedOnByConfig):
    """`channels.slack:`; a bot_token switches it on."""

    on_key = "bot_token"
    bot_token: str | None = Field(None, repr=False)
    app_token: str | None = Field(None, repr=False)
    signing_secret: str | None = Field(None, repr=False)
    mode: Literal["socket", "events"] = "socket"
    api_base: str = "https://slack.com/api/"
    callback_path: str = "/api/slack/events"
    groups: Literal["mention", "all"] = "mention"
    ping_interval: Duration = Field(10.0, ge=0.5, le=120)
    stale_after: Duration = Field(120.0, ge=2, le=86400)

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http(s) URL such as https://slack.com/api/")
        return value.rstrip("/") + "/"

    @field_validator("callback_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in "?#<> "):
            raise ValueError("expected a path such as /api/slack/events")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SlackOptions:
        if not self.enabled:
            return self
        if not (self.bot_token or "").startswith("xoxb-"):
            raise ValueError('bot_token must be the Bot User OAuth Token (xoxb-..., OAuth & '
                             'Permissions), e.g. bot_token: "${SLACK_BOT_TOKEN}"')
        if self.mode == "socket" and not (self.app_token or "").startswith("xapp-"):
            raise ValueError('mode: socket needs app_token, an app-level token (xapp-..., '
                             'Basic Information > App-Level Tokens, scope connections:write), '
                             'e.g. app_token: "${SLACK_APP_TOKEN}"')
        if self.mode == "events" and not self.signing_secret:
            raise ValueError("mode: events needs signing_secret (Basic Information > App "
                             'Credentials), e.g. signing_secret: "${keyring:slack_signing}"')
        if self.stale_after <= 2 * self.ping_interval:
            raise ValueError(f"stale_after ({self.stale_after:g} s) must be longer than two "
                             f"ping_interval ({self.ping_interval:g} s)")
        return self


class SlackChannel(PlatformChannel):
    name = "slack"
    Options = SlackOptions

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        assert isinstance(options, SlackOptions)
        self.web: SlackWeb | None = None
        self.link: ChildLink | None = None
        self.greenlets: list[gevent.Greenlet] = []
        self.liveness = Liveness(options.stale_after)
        self.seen = Seen()
        self.bot: dict[str, Any] = {}
        self.peer = ""  # Slack's address, for the address allowlist (Socket Mode)
        self.problem = ""  # the bot token's, from auth.test: shown over any connection
        self.line = StateLine()

    @property
    def sl(self) -> SlackOptions:
        assert isinstance(self.options, SlackOptions)
        return self.options

    # -- the channel contract --------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return
        self.running, self.problem = True, ""
        self.liveness = Liveness(self.sl.stale_after)
        self.web = SlackWeb(self.sl.api_base, self.sl.bot_token or "")
        self._set("connecting", f"{self.sl.mode} mode at {self.sl.api_base}")
        self.greenlets = [gevent.spawn(self._identify)]
        if self.sl.mode == "socket":
            self.link = self._new_link()
            self.link.start()
            self.greenlets.append(gevent.spawn(self._watch))

    def stop(self) -> None:
        self.running = False
        gevent.killall(self.greenlets)
        self.greenlets = []
        if self.link is not None:
            self.link.stop()  # the process ends, and its socket with it
            self.link = None
        self.handlers.join(timeout=DRAIN)
        self.web = None
        self.liveness.disconnected()
        self._set("stopped", "")

    def status(self) -> ChannelStatus:
        if not self.running:
            return ChannelStatus("stopped", "channels.slack needs a bot_token"
                                 if not self.sl.bot_token else "channels.slack.enabled is false")
        if self.problem:
            return ChannelStatus("retrying", self.problem, self.line.since)
        return self.line.status(self.liveness, "channels.slack.stale_after",
                                self.sl.stale_after)

    def stale_for(self) -> float | None:
        return self.liveness.stale_for() if self.running else None

    def push_problem(self) -> str | None:
        if not self.running:
            return "slack is switched off: give channels.slack a bot_token in config.yaml."
        return None

    def _set(self, state: str, detail: str) -> None:
        self.line.set(state, detail)

    def _who(self) -> str:
        if not self.bot:
            return ""
        return f" as @{self.bot.get('user')} in {self.bot.get('team')}"

    # -- the bot's identity (auth.test) ----------------------------------------------------
    def _identify(self) -> None:
        """auth.test until it answers: the bot's user id (its mentions, its own messages)
        and whether the bot token works at all."""
        backoff = 1.0
        while self.web is not None:
            try:
                self.bot = self.web.whoami()
                self.problem = ""
                host = urlsplit(self.sl.api_base).hostname or ""
                self.peer = socket.gethostbyname(host)
                if self.sl.mode == "events":
                    self.liveness.connected()
                    self._set("connected", f"Events API at {self.path}{self._who()}")
                self._answer_unanswered()  # now that Slack's address is known
                return
            except SlackApiError as e:
                self.problem = fix_for(str(e.response.get("error")))
            except NETWORK as e:
                self.problem = f"{type(e).__name__} reaching {self.sl.api_base}"
            log.warning("slack: auth.test: %s; next try in %.0f s", self.problem, backoff)
            gevent.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _answer_unanswered(self) -> None:
        """Messages stored (so acknowledged) but not answered when the gateway stopped:
        Slack will not deliver them again, so they are answered now, from Slack's address
        (the allowlist judges it as it judged the message)."""
        if not self.recovered:
            self.recovered = True
            for msg in unanswered(self.services, self.name, self.peer):
                self.handlers.spawn(answer_into_outbox, self.services, msg, self.sl.bot_token)

    # -- Socket Mode: the child process ----------------------------------------------------
    def _new_link(self) -> ChildLink:
        workspace = self.services.outbox.workspace
        proxies = {k: v for k, v in os.environ.items() if k in PROXY_ENV}
        return ChildLink("gateway.channels.slack_socket", cwd=workspace,
                         env=host_environment(workspace, proxies), on_start=self._link_up,
                         on_line=self._line, on_ended=self._link_ended, cap=MAX_BACKOFF)

    def _link_up(self) -> None:
        if self.link is not None:
            self.link.send({"op": "connect", "app_token": self.sl.app_token,
                            "api_base": self.sl.api_base,
                            "ping_interval": self.sl.ping_interval})

    def _link_ended(self, why: str, wait: float) -> None:
        self.liveness.disconnected()
        self._set("retrying", f"the Slack socket process ended ({why}); again in {wait:.0f} s")
        log.warning("slack: the socket process ended (%s); starting it again in %.0f s", why,
                    wait)

    def _line(self, item: dict[str, Any]) -> None:
        event = item.get("event")
        if event == "hello":
            self.liveness.connected()
            self.liveness.mark_probe_back()
            self._set("connected", f"Socket Mode{self._who()}, "
                      f"{item.get('connections') or 1} socket(s)")
        elif event == "pong":
            self.liveness.mark_probe_back()  # Slack answered on the socket events come by
        elif event == "envelope":
            if item.get("type") == "events_api" and isinstance(item.get("payload"), dict):
                self._take_callback(item["payload"])
            self._ack(str(item.get("envelope_id") or ""))
        elif event == "disconnect":
            log.info("slack: Slack asked for a new socket (%s)", item.get("reason"))
        elif event == "refused":
            error = str(item.get("error"))
            self.liveness.disconnected()
            self._set("retrying", fix_for(error, token="app"))
        elif event == "unreachable":
            self.liveness.disconnected()
            self._set("retrying", f"{item.get('why')} reaching {self.sl.api_base}")

    def _ack(self, envelope_id: str) -> None:
        link = self.link
        if link is None or not envelope_id:
            return
        try:
            link.send({"op": "ack", "envelope_id": envelope_id})
        except OSError as e:  # the process is gone: Slack delivers the envelope again
            log.info("slack: envelope %s not acknowledged: %s", envelope_id, e)

    def _watch(self) -> None:
        while True:
            gevent.sleep(self.sl.ping_interval)
            if self.line.judge(self.liveness):
                log.warning("slack: stale: nothing on the socket for over %g s; restarting the "
                            "socket process", self.sl.stale_after)
            if self.liveness.is_stale and not self.liveness.restarted and self.link:
                self.liveness.restarted = True
                self.link.stop()
                self.link.start()

    # -- Events API ------------------------------------------------------------------------
    def callback(self) -> ResponseReturnValue:
        if not self.running or self.sl.mode != "events":
            return jsonify({"error": "the Slack Events API is off (channels.slack.mode)"}), 503
        body = request.get_data(cache=False)
        verifier = SignatureVerifier(self.sl.signing_secret or "")
        if not verifier.is_valid_request(body, dict(request.headers)):
            log.warning("slack: a request to %s with a bad or old signature was refused",
                        self.path)
            return jsonify({"error": "invalid signature (channels.slack.signing_secret)"}), 401
        try:
            data = json.loads(body)
        except ValueError:
            return jsonify({"error": "the body is not JSON"}), 400
        if not isinstance(data, dict):
            return jsonify({"error": "the body is not a JSON object"}), 400
        if data.get("type") == "url_verification":
            return jsonify({"challenge": data.get("challenge")})
        if data.get("type") == "event_callback":
            self.peer = client_address(self.entry, request)
            self._take_callback(data)  # answered 200 once stored: Slack retries otherwise
        return "", 200

    # -- receiving -------------------------------------------------------------------------
    def _take_callback(self, payload: dict[str, Any]) -> None:
        """Hand the callback's message to a greenlet; return once it is stored (or dropped)."""
        event = payload.get("event")
        if not isinstance(event, dict):
            return
        self.liveness.mark_in()
        incoming = addressed(event, self.sl.groups, self.bot.get("user_id"),
                             self.bot.get("bot_id"))
        if incoming is None or not self.seen.first(incoming):
            return
        stored = Event()
        self.handlers.spawn(self._answer, incoming, stored)
        stored.wait()

    def _answer(self, incoming: Incoming, stored: Event) -> None:
        try:
            found = self._message(incoming)
            if isinstance(found, Reply):
                queue_refusal(self.services, self.name, found)
                return
            answer_into_outbox(self.services, found, self.sl.bot_token, on_stored=stored.set)
        except Exception:
            log.exception("slack: a message in %s failed", incoming.channel)
        finally:
            stored.set()

    def _message(self, incoming: Incoming) -> Message | Reply:
        """The message through the intake, its files downloaded into the inbox."""
        receipt = self.intake.receive()
        problem = None
        try:
            for shared in incoming.files:
                self._download(shared, receipt)
        except FileRefused as e:
            problem = e.message
        except httpx.HTTPError as e:
            problem = f"The file could not be fetched from Slack ({e}); send it again."
        arrival = Arrival(self.name, {"text": incoming.text, "sender": incoming.user,
                                      "chat": incoming.channel, "id": incoming.client_id},
                          credential=self.sl.bot_token, peer=self.peer, problem=problem,
                          received=receipt, takes_files=True, needs_sender=True)
        return self.intake.message(arrival)

    def _download(self, shared: dict[str, Any], receipt: Any) -> None:
        url = shared.get("url_private_download") or shared.get("url_private")
        if self.web is None or not url:
            return
        name = str(shared.get("name") or shared.get("id") or "file")
        with receipt.open(name, shared.get("mimetype")) as into:
            self.web.download(str(url), into)

    # -- sending ---------------------------------------------------------------------------
    def deliver(self, outbound: Outbound) -> None:
        """Files, then the text, in the thread of the message answered. Slack has no
        idempotency key: a send cut off by a crash is sent again."""
        web = self.web
        if web is None:
            raise RetryLater("slack is stopped")
        _, thread = reply_place(outbound.reply_to)
        workspace = self.services.outbox.workspace
        files = [(workspace / f["path"], str(f["name"])) for f in outbound.files]
        web.post(outbound.chat, outbound.text, thread, files)
        self.liveness.mark_out()
