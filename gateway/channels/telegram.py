"""Telegram: a bot, by long polling (no public URL needed) or a webhook.

    channels:
      telegram:
        bot_token: "${TELEGRAM_BOT_TOKEN}"
        api_base: "https://api.telegram.org"   # a local Bot API server, or a test's fake
        mode: polling                          # or webhook
        webhook_url: "https://your-domain.com/api/telegram"   # webhook mode: the path is served
        webhook_secret: "${keyring:telegram_webhook}"        # X-Telegram-Bot-Api-Secret-Token
        groups: mention                        # mention | all | off

Senders are `telegram:<user id>` (each meets the stranger policy: the bot token proves
Telegram, not the person), chats are Telegram chat ids. Text, photos, voice notes and
documents come in (files downloaded with getFile into the inbox); replies leave through the
outbox (`deliver`: sendMessage, sendDocument), rendered to Telegram's HTML, split at 4,096
characters; a piece whose formatting Telegram refuses goes as plain text with the pieces
after it (the first refused: the whole text as written; a later one: the rest without its
markup, so no piece arrives twice). In groups the bot answers when mentioned or replied to
(`groups: mention`), as a reply to the message.

The rules that keep it right:
- One poller: `start` never starts a second one; a 409 (a webhook is set, or another program
  polls the same bot) deletes the webhook (polling mode) and backs off (1 s doubling to 60 s).
- The offset is confirmed to Telegram only after the update's message is stored (the
  pipeline's `on_stored`): a crash before that gets the update again, and its client id
  (`<chat id>:<message id>`) makes the retry answered once; a message stored but not answered
  when the gateway stopped is answered after the next start (`Store.unanswered`).
- The reply row is written before the answer (`Outbox.expect_reply`) and filled after it: a
  crash between storing the answer and queuing it is sent after the start (`Outbox.recover`).
- Replies are at least once: Telegram has no idempotency key, so a reply whose sendMessage
  was cut off by a crash is sent again after the start (the outbox's rule).
- Liveness: every getUpdates that returns is evidence; a `getMe` probe every
  `probe_interval`; a poll silent beyond `stale_after` is stale: the poller is restarted once
  (a hung getUpdates ends with it) and `channel_stale` fires if it stays so.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

import gevent
import httpx
from flask import jsonify, request
from flask.typing import ResponseReturnValue
from gevent.event import Event
from pydantic import Field, field_validator, model_validator

from gateway.channels.answer_later import answer_into_outbox, queue_refusal, unanswered
from gateway.channels.base import (
    ChannelOptions,
    ChannelStatus,
    Services,
    SwitchedOnByConfig,
)
from gateway.channels.liveness import Liveness
from gateway.channels.platform import PlatformChannel
from gateway.channels.platform_address import platform_address
from gateway.channels.telegram_api import BotApi, TelegramError, render, split, unformatted, upload
from gateway.common.options import Duration
from gateway.core.inbox import FileRefused
from gateway.core.intake import Arrival
from gateway.core.message import Message, Reply
from gateway.core.outbound import DeliveryRefused, Outbound, RetryLater

log = logging.getLogger(__name__)

DRAIN = 5.0
MAX_BACKOFF = 60.0
TYPING_EVERY = 4.5  # Telegram shows "typing" for 5 s


class TelegramOptions(SwitchedOnByConfig):
    on_key = "bot_token"  # the guide's snippet has no `enabled:`
    """`channels.telegram:`; a bot_token switches it on."""

    bot_token: str | None = Field(None, repr=False)
    api_base: str = "https://api.telegram.org"
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = None
    webhook_secret: str | None = Field(None, repr=False)
    groups: Literal["mention", "all", "off"] = "mention"
    format: Literal["markdown", "html", "plain"] = "markdown"
    poll_timeout: Duration = Field(30.0, ge=0, le=50)
    probe_interval: Duration = Field(60.0, ge=0.1, le=3600)
    stale_after: Duration = Field(180.0, ge=0.5, le=86400)

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http(s) URL such as https://api.telegram.org")
        return value.rstrip("/")

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and not (1 <= len(value) <= 256 and
                                      all(c.isalnum() or c in "_-" for c in value)):
            raise ValueError("Telegram takes 1-256 characters A-Z, a-z, 0-9, _ and -")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TelegramOptions:
        if self.enabled and not self.bot_token:
            raise ValueError('bot_token is required to switch telegram on, e.g. bot_token: '
                             '"${TELEGRAM_BOT_TOKEN}" (from @BotFather)')
        if self.mode == "webhook":
            if not self.webhook_url or urlsplit(self.webhook_url).scheme not in ("http",
                                                                                 "https"):
                raise ValueError("mode: webhook needs webhook_url, the public https:// "
                                 "address Telegram posts to")
            if not self.webhook_secret:
                raise ValueError("mode: webhook needs webhook_secret (Telegram sends it in "
                                 "X-Telegram-Bot-Api-Secret-Token), e.g. "
                                 '"${keyring:telegram_webhook}"')
        if self.stale_after <= max(self.probe_interval, self.poll_timeout):
            raise ValueError(f"stale_after ({self.stale_after:g} s) must be longer than "
                             f"probe_interval and poll_timeout")
        return self

    @property
    def path(self) -> str:
        return urlsplit(self.webhook_url or "").path or "/api/telegram"


class TelegramChannel(PlatformChannel):
    name = "telegram"
    Options = TelegramOptions
    path_attr = "path"
    path_key = "webhook_url"

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        assert isinstance(options, TelegramOptions)
        self.sender_api: BotApi | None = None
        self.poller: gevent.Greenlet | None = None
        self.watcher: gevent.Greenlet | None = None
        self.liveness = Liveness(options.stale_after)
        self.bot: dict[str, Any] = {}
        self.offset: int | None = None
        self.peer = ""  # the Bot API server's address: the network peer of every update
        self.state: tuple[str, str, float] = ("stopped", "", time.time())
        self._stale_wall: float | None = None
        # chat -> its messages not answered yet: one "typing" loop per chat, however many wait
        self._unanswered: dict[str, list[Event]] = {}

    @property
    def tg(self) -> TelegramOptions:
        assert isinstance(self.options, TelegramOptions)
        return self.options

    # -- the channel contract --------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return  # never a second poller
        self.running = True
        self.liveness = Liveness(self.tg.stale_after)
        self.sender_api = BotApi(self.tg.api_base, self.tg.bot_token or "", 30.0)
        self._set("connecting", f"{self.tg.mode} at {self.tg.api_base}")
        self.poller = gevent.spawn(self._run)
        self.watcher = gevent.spawn(self._watch)

    def stop(self) -> None:
        self.running = False
        for greenlet in (self.watcher, self.poller):
            if greenlet is not None:
                greenlet.kill()
        self.watcher = self.poller = None
        self.handlers.join(timeout=DRAIN)
        if self.sender_api is not None:
            self.sender_api.close()
            self.sender_api = None
        self.liveness.disconnected()
        self._set("stopped", "")

    def status(self) -> ChannelStatus:
        state, detail, since = self.state
        if not self.running:
            return ChannelStatus("stopped", "channels.telegram needs a bot_token"
                                 if not self.tg.bot_token else
                                 "channels.telegram.enabled is false")
        if state == "connected" and self.liveness.is_stale:
            return ChannelStatus("stale", self.liveness.stale_detail(self.name),
                                 self._stale_wall)
        if state == "connected":
            detail = f"{detail}; {self.liveness.describe()}"
        return ChannelStatus(state, detail, since)  # type: ignore[arg-type]

    def stale_for(self) -> float | None:
        return self.liveness.stale_for() if self.running else None

    def push_problem(self) -> str | None:
        if not self.running:
            return "telegram is switched off: give channels.telegram a bot_token in config.yaml."
        return None

    def _set(self, state: str, detail: str) -> None:
        if self.state[0] != state or self.state[1] != detail:
            since = self.state[2] if self.state[0] == state else time.time()
            self.state = (state, detail, since)

    # -- receiving -------------------------------------------------------------------------
    def _run(self) -> None:
        """The one poller (or, in webhook mode, the webhook's setup): getMe, then updates."""
        api = BotApi(self.tg.api_base, self.tg.bot_token or "", self.tg.poll_timeout + 15)
        try:
            # before: the allowlist judges recovered ones
            self.peer = platform_address(self.tg.api_base)
            self._answer_unanswered()
            backoff = 1.0
            while True:
                try:
                    self._poll_once(api)
                    backoff = 1.0
                except TelegramError as e:
                    self._set("retrying", self._why(e))
                    log.warning("telegram: %s; next try in %.0f s", self._why(e), backoff)
                    if e.status == 409 and "webhook" in e.description and \
                            self.tg.mode == "polling":
                        self._delete_webhook(api)
                    gevent.sleep(max(backoff, e.retry_after or 0))
                    backoff = min(backoff * 2, MAX_BACKOFF)
                except httpx.HTTPError as e:
                    self._set("retrying", f"{type(e).__name__} reaching {self.tg.api_base}")
                    gevent.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            api.close()

    def _poll_once(self, api: BotApi) -> None:
        if not self.bot:
            self.bot = api.call("getMe")
        if self.tg.mode == "webhook":
            api.call("setWebhook", {"url": self.tg.webhook_url, "secret_token":
                                    self.tg.webhook_secret, "allowed_updates": ["message"]})
            self.liveness.connected()
            self._set("connected", f"webhook {self.tg.webhook_url} as @"
                      f"{self.bot.get('username')}")
            gevent.sleep(float("inf"))
        params: dict[str, Any] = {"timeout": int(self.tg.poll_timeout),
                                  "allowed_updates": ["message"]}
        if self.offset is not None:
            params["offset"] = self.offset
        updates = api.call("getUpdates", params)
        if self.liveness.connected_at is None:
            self.liveness.connected()
        self.liveness.mark_probe_back()  # a poll came back: the path updates take works
        self._set("connected", f"polling {self.tg.api_base} as @{self.bot.get('username')}")
        for update in updates:
            self._take_update(update)
            self.offset = int(update["update_id"]) + 1  # confirmed by the next poll

    def _delete_webhook(self, api: BotApi) -> None:
        try:
            api.call("deleteWebhook")
            log.warning("telegram: a webhook was set for this bot; deleted it to poll "
                        "(channels.telegram.mode: polling)")
        except (TelegramError, httpx.HTTPError) as e:
            log.warning("telegram: deleting the webhook failed: %s", e)

    @staticmethod
    def _why(e: TelegramError) -> str:
        if e.status == 401:
            return "Telegram refused the bot token (401): check channels.telegram.bot_token"
        if e.status == 409 and "webhook" in e.description:
            return "a webhook is set for this bot (409); deleting it to poll"
        if e.status == 409:
            return ("another program polls this bot (409): only one may; stop the other "
                    "or give this gateway its own bot")
        return f"Telegram answered {e.status}: {e.description}"

    def _take_update(self, update: dict[str, Any]) -> None:
        """Hand the update's message to a greenlet; return once it is stored (or refused)."""
        message = update.get("message")
        if not isinstance(message, dict) or not self._addressed(message):
            return
        self.liveness.mark_in()
        stored = Event()
        self.handlers.spawn(self._answer, message, stored)
        stored.wait()

    def _addressed(self, message: dict[str, Any]) -> bool:
        chat = message.get("chat") or {}
        if chat.get("type") == "private":
            return True
        if chat.get("type") not in ("group", "supergroup") or self.tg.groups == "off":
            return False
        if self.tg.groups == "all":
            return True
        replied = (message.get("reply_to_message") or {}).get("from") or {}
        if replied.get("id") == self.bot.get("id"):
            return True
        text = message.get("text") or message.get("caption") or ""
        return f"@{self.bot.get('username')}".lower() in text.lower()

    def _answer(self, message: dict[str, Any], stored: Event) -> None:
        chat = str(message["chat"]["id"])
        answered = Event()

        def on_stored() -> None:
            stored.set()
            self._show_typing(chat, answered)

        try:
            found = self._message(message)
            if isinstance(found, Reply):
                queue_refusal(self.services, self.name, found)
                return
            self._answer_stored(found, on_stored, answered)
        except Exception:
            log.exception("telegram: a message in chat %s failed", chat)
        finally:
            stored.set()

    def _message(self, message: dict[str, Any]) -> Message | Reply:
        """The update's message through the intake, its files downloaded into the inbox."""
        sender = str((message.get("from") or {}).get("id") or "")
        chat = str(message["chat"]["id"])
        text = message.get("text") or message.get("caption") or ""
        username = self.bot.get("username")
        if username and message["chat"].get("type") != "private":
            text = text.replace(f"@{username}", "").strip()
        receipt = self.intake.receive()
        problem = None
        try:
            self._download(message, receipt)
        except FileRefused as e:
            problem = e.message
        except (TelegramError, httpx.HTTPError) as e:
            problem = f"The file could not be fetched from Telegram ({e}); send it again."
        arrival = Arrival(self.name, {"text": text, "sender": sender, "chat": chat,
                                      "id": f"{chat}:{message['message_id']}"},
                          credential=self.tg.bot_token, peer=self.peer, problem=problem,
                          received=receipt, takes_files=True, needs_sender=True)
        return self.intake.message(arrival)

    def _download(self, message: dict[str, Any], receipt: Any) -> None:
        api = self.sender_api
        if api is None:
            return
        found: tuple[str, str, str | None] | None = None
        if message.get("photo"):
            best = message["photo"][-1]
            found = (best["file_id"], f"photo-{message['message_id']}.jpg", "image/jpeg")
        elif message.get("voice"):
            voice = message["voice"]
            found = (voice["file_id"], f"voice-{message['message_id']}.ogg",
                     voice.get("mime_type") or "audio/ogg")
        elif message.get("document"):
            doc = message["document"]
            found = (doc["file_id"], doc.get("file_name") or "document",
                     doc.get("mime_type"))
        if found is None:
            return
        file_id, name, media_type = found
        info = api.call("getFile", {"file_id": file_id})
        with receipt.open(name, media_type) as incoming:
            api.download(info["file_path"], incoming)

    def _answer_stored(self, msg: Message, on_stored: Callable[[], None] | None = None,
                       answered: Event | None = None) -> None:
        """Answer `msg` into the outbox (`channels.answer_later`)."""
        answer_into_outbox(self.services, msg, self.tg.bot_token, on_stored,
                           answered.set if answered is not None else None)

    def _show_typing(self, chat: str, answered: Event) -> None:
        waiting = self._unanswered.get(chat)
        if waiting is not None:
            waiting.append(answered)
            return
        self._unanswered[chat] = [answered]
        gevent.spawn(self._typing, chat)

    def _typing(self, chat: str) -> None:
        """"typing" in the chat every `TYPING_EVERY` while any of its messages waits for an
        answer (once at least). One loop per chat: one per message made a burst of queued
        messages send more typing calls than replies, and they took the client's connections
        from `sendMessage` (measured: 1,836 calls for 95 replies, then pool time-outs)."""
        waiting = self._unanswered[chat]
        due = 0.0
        try:
            while (api := self.sender_api) is not None:
                if time.monotonic() >= due:
                    due = time.monotonic() + TYPING_EVERY
                    try:
                        api.call("sendChatAction", {"chat_id": chat, "action": "typing"})
                    except (TelegramError, httpx.HTTPError) as e:
                        log.info("telegram: typing indicator for %s failed: %s", chat, e)
                waiting[:] = [e for e in waiting if not e.is_set()]
                if not waiting:
                    return
                waiting[0].wait(max(0.0, due - time.monotonic()))
        finally:
            self._unanswered.pop(chat, None)

    def _answer_unanswered(self) -> None:
        """Messages stored but not answered when the gateway stopped: Telegram will not send
        them again (their offset was confirmed), so they are answered now."""
        if self.recovered:
            return
        self.recovered = True
        for msg in unanswered(self.services, self.name, self.peer):
            self.handlers.spawn(self._answer_stored, msg)

    # -- webhook ---------------------------------------------------------------------------
    def callback(self) -> ResponseReturnValue:
        if not self.running or self.tg.mode != "webhook":
            return jsonify({"error": "telegram webhook is off (channels.telegram.mode)"}), 503
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not hmac.compare_digest(given.encode(), (self.tg.webhook_secret or "").encode()):
            return jsonify({"error": "wrong or missing secret token"}), 401
        update = request.get_json(silent=True)
        if isinstance(update, dict):
            self.peer = request.remote_addr or ""
            self._take_update(update)  # answered 200 once stored: Telegram retries otherwise
        return jsonify({"ok": True})

    # -- liveness --------------------------------------------------------------------------
    def _watch(self) -> None:
        while True:
            gevent.sleep(self.tg.probe_interval)
            api = self.sender_api
            if api is None:
                return
            try:
                api.call("getMe", timeout=10)
                self.liveness.mark_heard()
            except (TelegramError, httpx.HTTPError) as e:
                log.info("telegram: the getMe probe failed: %s", e)
            if self.tg.mode == "webhook":
                continue
            if self.liveness.check():
                self._stale_wall = time.time()
                log.warning("telegram: stale: no poll came back for over %g s; restarting "
                            "the poller", self.tg.stale_after)
            if self.liveness.is_stale and not self.liveness.restarted:
                self.liveness.restarted = True
                if self.poller is not None:
                    self.poller.kill()  # a hung getUpdates ends with its client
                self.poller = gevent.spawn(self._run)

    # -- sending ---------------------------------------------------------------------------
    def deliver(self, outbound: Outbound) -> None:
        """sendDocument for each file, then the text (rendered, split, plain on refusal).
        Telegram has no idempotency key: a send cut off by a crash is sent again."""
        api = self.sender_api
        if api is None:
            raise RetryLater("telegram is stopped")
        reply_to = _message_id(outbound)
        try:
            for f in outbound.files:
                path = self.services.outbox.workspace / f["path"]
                document = upload(path, f["name"], f.get("media_type") or
                                  "application/octet-stream")
                try:
                    api.call("sendDocument", {"chat_id": outbound.chat},
                             files={"document": document})
                finally:
                    document[1].close()
            if outbound.text.strip():
                self._send_text(api, outbound.chat, outbound.text, reply_to)
        except TelegramError as e:
            if e.status == 429 or e.status >= 500:
                raise RetryLater(f"Telegram answered {e.status}: {e.description}",
                                 e.retry_after) from e
            raise DeliveryRefused(f"Telegram answered {e.status}: {e.description}") from e
        except httpx.HTTPError as e:
            raise RetryLater(f"{type(e).__name__} reaching {self.tg.api_base}") from e
        self.liveness.mark_out()

    def _send_text(self, api: BotApi, chat: str, text: str, reply_to: int | None) -> None:
        """The text rendered and split; a piece whose formatting Telegram refuses goes as
        plain text with the pieces after it (those before it arrived formatted: not again)."""
        rendered, mode = render(text, self.tg.format)
        extra: dict[str, Any] = {}
        if reply_to is not None and chat.startswith("-"):
            extra["reply_parameters"] = {"message_id": reply_to,
                                         "allow_sending_without_reply": True}
        pieces = split(rendered, mode)
        for i, piece in enumerate(pieces):
            params = {"chat_id": chat, "text": piece, **(extra if i == 0 else {})}
            if mode:
                params["parse_mode"] = mode
            try:
                api.call("sendMessage", params)
            except TelegramError as e:
                if e.status != 400 or "parse entities" not in e.description or mode is None:
                    raise
                log.info("telegram: formatting of piece %d of %d refused (%s); sending the "
                         "rest as plain text", i + 1, len(pieces), e.description)
                rest = text if i == 0 else unformatted("".join(pieces[i:]))
                for j, plain in enumerate(split(rest, None)):
                    api.call("sendMessage", {"chat_id": chat, "text": plain,
                                             **(extra if i == j == 0 else {})})
                return


def _message_id(outbound: Outbound) -> int | None:
    """The Telegram message a reply answers, from its client id `<chat id>:<message id>`."""
    tail = (outbound.reply_to or "").rpartition(":")[2]
    return int(tail) if tail.isdigit() else None
