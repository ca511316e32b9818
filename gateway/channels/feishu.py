"""Feishu / Lark (飞书): a self-built app's bot, by the long connection (no public URL needed)
or the HTTP event callback.

    channels:
      feishu:
        app_id: "cli_a1b2c3d4e5"
        app_secret: "${FEISHU_APP_SECRET}"
        mode: long_connection          # or callback (Feishu posts to callback_path)
        domain: feishu                 # lark (open.larksuite.com), or a proxy's https origin
        verification_token: "${keyring:feishu_token}"   # callback mode
        encrypt_key: "${keyring:feishu_encrypt_key}"    # callback mode (and encrypted events)
        callback_path: /api/feishu/events
        groups: mention                # mention | all | off

Senders are `feishu:<open_id>` (each meets the stranger policy: the app's credentials prove
Feishu, not the person), chats are Feishu chat ids (`oc_...`). Text and rich text (`post`)
come in as plain text, images and files through the message resource API into the inbox; in
group chats the bot answers when @mentioned (`groups: mention`). Replies leave through the
outbox (`deliver`): a reply to the message (`im/v1/messages/:id/reply`, in its thread when it
was in one), a new message for what the gateway starts; files uploaded first. The outbound id
is Feishu's `uuid`, so a send retried after a crash is not shown twice.

How it is hosted: every SDK call runs in the child process `feishu_ws_host` (see there: the
SDK is asyncio, and its import would cost the gateway ~3 s of loop and ~160 MB). The child
forwards each message event as a line; the channel stores it and answers `ack`, and only then
does the child acknowledge Feishu (so a message is never acknowledged unstored, and always
well within Feishu's 3 s, long before the model answers). Feishu delivers an event again when
it got no acknowledgement, with a new event_id: the client id is the message_id, so it is
answered once. A message stored but not answered when the gateway stopped is answered after
the next start (Feishu will not send it again).

Liveness: a pong to the SDK's ping is evidence the socket carries the server's frames; a
message in is too. Nothing for `stale_after`: stale, the child is restarted once (a socket
that died quietly, with the SDK still "connected", is replaced), and `channel_stale` fires if
it stays so. A stop or a reload ends the child (its stdin closes; SIGKILL after 3 s), so no
old connection is left to take messages.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import logging
from typing import Any

import gevent
from flask import Response, jsonify, request
from flask.typing import ResponseReturnValue
from gevent.event import AsyncResult, Event

from gateway.channels.answer_later import answer_into_outbox, queue_refusal, unanswered
from gateway.channels.base import ChannelOptions, ChannelStatus, Services
from gateway.channels.feishu_content import mentions_bot, read
from gateway.channels.feishu_options import FeishuOptions
from gateway.channels.liveness import Liveness
from gateway.channels.platform import PlatformChannel
from gateway.channels.platform_address import platform_address
from gateway.channels.platform_state import StateLine
from gateway.common.child_link import ChildLink
from gateway.core.inbox import FileRefused
from gateway.core.intake import Arrival
from gateway.core.message import Message, Reply
from gateway.core.outbound import DeliveryRefused, Outbound, RetryLater
from gateway.skills.hostpool import host_environment

log = logging.getLogger(__name__)

CHILD = "gateway.channels.feishu_ws_host"
DRAIN = 5.0
CALL_MARGIN = 10.0  # the child times its HTTP calls out itself; the gateway waits this longer
MAX_TEXT = 30_000  # characters per text message (Feishu takes 150 KB of request body)
THREAD = ":thread"  # a client id's mark: the message was in a thread (answered there)


class FeishuChannel(PlatformChannel):
    name = "feishu"
    Options = FeishuOptions

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        assert isinstance(options, FeishuOptions)
        self.link: ChildLink | None = None
        self.watcher: gevent.Greenlet | None = None
        self.liveness = Liveness(options.stale_after)
        self.bot: dict[str, Any] = {}
        self.calls: dict[int, AsyncResult] = {}
        self.ids = itertools.count(1)
        self.peer = ""
        self.line = StateLine()

    @property
    def fs(self) -> FeishuOptions:
        assert isinstance(self.options, FeishuOptions)
        return self.options

    # -- the channel contract --------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return  # never a second child
        self.running = True
        self.liveness = Liveness(self.fs.stale_after)
        self.line.set("connecting", f"{self.fs.mode} at {self.fs.origin}")
        workspace = self.services.outbox.workspace
        self.link = ChildLink(CHILD, cwd=workspace, env=host_environment(workspace, {}),
                              on_start=self._configure_child, on_line=self._take,
                              on_ended=self._ended, cap=60.0)
        self.link.start()
        self.watcher = gevent.spawn(self._watch)
        self.handlers.spawn(self._answer_unanswered)

    def stop(self) -> None:
        self.running = False
        if self.watcher is not None:
            self.watcher.kill()
            self.watcher = None
        if self.link is not None:
            self.link.stop()
            self.link = None
        for waiting in list(self.calls.values()):
            waiting.set({"error": "the feishu channel stopped", "retry": True})
        self.handlers.join(timeout=DRAIN)
        self.liveness.disconnected()
        self.line.set("stopped", "")

    def status(self) -> ChannelStatus:
        if not self.running:
            return ChannelStatus("stopped", "channels.feishu needs an app_id and app_secret"
                                 if not self.fs.app_id else "channels.feishu.enabled is false")
        return self.line.status(self.liveness, "channels.feishu.stale_after", self.fs.stale_after)

    def stale_for(self) -> float | None:
        return self.liveness.stale_for() if self.running else None

    def push_problem(self) -> str | None:
        if not self.running:
            return ("feishu is switched off: give channels.feishu an app_id and app_secret "
                    "in config.yaml.")
        return None

    # -- the child -------------------------------------------------------------------------
    def _configure_child(self) -> None:
        """What the child must know, on its stdin (never argv or env: `ps` shows those)."""
        assert self.link is not None
        self.peer = platform_address(self.fs.origin)
        self.link.send({"op": "config", "app_id": self.fs.app_id,
                        "app_secret": self.fs.app_secret, "domain": self.fs.origin,
                        "mode": self.fs.mode, "encrypt_key": self.fs.encrypt_key or "",
                        "verification_token": self.fs.verification_token or "",
                        "timeout": self.fs.request_timeout})

    def _take(self, item: dict[str, Any]) -> None:
        """One line from the child (on the link's reader: nothing here waits)."""
        if "event" in item:
            self.handlers.spawn(self._event, item["event"], item.get("id"))
        elif "id" in item:
            waiting = self.calls.get(int(item["id"]))
            if waiting is not None:
                waiting.set(item)
        elif "heard" in item:
            self.liveness.mark_probe_back()
        elif "bot" in item:
            self.bot = dict(item["bot"] or {})
        elif item.get("state") == "connected":
            if self.liveness.connected_at is None:
                self.liveness.connected()
            self.line.set("connected", f"{item.get('detail', '')} as "
                      f"{self.bot.get('app_name') or self.bot.get('open_id') or 'the bot'}")
        elif item.get("state") == "retrying":
            self.liveness.disconnected()
            self.line.set("retrying", str(item.get("detail") or ""))
            log.warning("feishu: %s", item.get("detail"))

    def _ended(self, why: str, wait: float) -> None:
        self.liveness.disconnected()
        if self.line.state != "retrying":
            self.line.set("retrying", f"the feishu process ended ({why})")
        log.warning("feishu: the channel's process ended (%s); starting it again in %.0f s",
                    why, wait)

    def _call(self, line: dict[str, Any], timeout: float) -> dict[str, Any]:
        """A call answered by the child; RetryLater when it is not running."""
        link = self.link
        if link is None:
            raise RetryLater("feishu is stopped")
        call_id = next(self.ids)
        waiting = self.calls[call_id] = AsyncResult()
        try:
            link.send({**line, "id": call_id})
            answer: dict[str, Any] = waiting.get(timeout=timeout)
        except OSError as e:
            raise RetryLater(f"the feishu process is not running ({e})") from e
        except gevent.Timeout as e:
            raise RetryLater(f"no answer from the feishu process within {timeout:g} s") from e
        finally:
            self.calls.pop(call_id, None)
        return answer

    # -- receiving -------------------------------------------------------------------------
    def _event(self, event: dict[str, Any], frame: Any, stored: Event | None = None) -> None:
        """One `im.message.receive_v1`: stored, `ack` to the child, then answered."""
        done = stored or Event()
        ok = True
        try:
            body = event.get("event") or {}
            message = body.get("message") or {}
            sender = body.get("sender") or {}
            if sender.get("sender_type") == "user" and self._addressed(message):
                self.liveness.mark_in()
                ok = self._answer(message, sender, done)
        except Exception:
            log.exception("feishu: an event failed")
            ok = False
        finally:
            done.set()
            if frame is not None and self.link is not None:
                with contextlib.suppress(OSError):  # the child is gone: Feishu delivers again
                    self.link.send({"op": "ack", "id": frame, "ok": ok})

    def _addressed(self, message: dict[str, Any]) -> bool:
        if message.get("chat_type") == "p2p":
            return True
        if self.fs.groups == "off":
            return False
        return self.fs.groups == "all" or mentions_bot(message, self.bot.get("open_id", ""))

    def _answer(self, message: dict[str, Any], sender: dict[str, Any], stored: Event) -> bool:
        """Through the intake; True once stored (or answered from the store: a redelivery),
        False when it could not be taken (Feishu should deliver it again)."""
        found = self._message(message, sender)
        if isinstance(found, Reply):
            queue_refusal(self.services, self.name, found)
            return found.error not in ("unavailable", "shutting_down", "internal_error")
        self.handlers.spawn(self._answer_stored, found, stored)
        stored.wait()
        return True

    def _answer_stored(self, msg: Message, stored: Event) -> None:
        try:
            answer_into_outbox(self.services, msg, self.fs.bot_token, stored.set)
        finally:
            stored.set()  # refused or failed: the event is done with

    def _message(self, message: dict[str, Any], sender: dict[str, Any]) -> Message | Reply:
        open_id = str((sender.get("sender_id") or {}).get("open_id") or "")
        content = read(message, self.bot.get("open_id", ""))
        receipt = self.intake.receive()
        problem = None
        for resource in content.resources:
            answer = self._call({"op": "download", "message_id": message.get("message_id"),
                                 "key": resource.key, "kind": resource.kind},
                                self.fs.request_timeout + CALL_MARGIN)
            if "error" in answer:
                problem = f"The file could not be fetched from Feishu ({answer['error']})."
                break
            try:
                receipt.add_base64(answer.get("name") or resource.name, None, answer["data"])
            except FileRefused as e:
                problem = e.message
                break
        client_id = str(message.get("message_id") or "")
        if message.get("thread_id"):
            client_id += THREAD
        arrival = Arrival(self.name, {"text": content.text, "sender": open_id,
                                      "chat": str(message.get("chat_id") or ""),
                                      "id": client_id},
                          credential=self.fs.bot_token, peer=self.peer, problem=problem,
                          received=receipt, takes_files=True, needs_sender=True)
        return self.intake.message(arrival)

    def _answer_unanswered(self) -> None:
        """Messages stored but not answered when the gateway stopped: Feishu was acknowledged
        and will not send them again."""
        if not self.recovered:
            self.recovered = True
            for msg in unanswered(self.services, self.name, self.peer):
                self.handlers.spawn(answer_into_outbox, self.services, msg, self.fs.bot_token)

    # -- the HTTP event callback -----------------------------------------------------------
    def callback(self) -> ResponseReturnValue:
        """Feishu's POST: decrypted and verified by the SDK in the child; a message event is
        stored before the 200 (Feishu retries otherwise), and answered later."""
        if not self.running or self.fs.mode != "callback":
            return jsonify({"error": "the feishu callback is off (channels.feishu.mode)"}), 503
        try:
            answer = self._call({"op": "callback", "uri": request.path,
                                 "headers": dict(request.headers),
                                 "body": base64.b64encode(request.get_data()).decode()}, 10.0)
        except RetryLater as e:
            return jsonify({"error": str(e)}), 503
        if "error" in answer:
            return jsonify({"error": answer["error"]}), 503
        status = int(answer.get("status") or 500)
        if status != 200:
            log.warning("feishu: a callback was refused (%s): %s", status, answer.get("body"))
            return Response(answer.get("body") or "", status, mimetype="application/json")
        self.peer = request.remote_addr or ""
        for event in answer.get("events") or []:
            stored = Event()
            self.handlers.spawn(self._event, event, None, stored)
            stored.wait()
        return Response(answer.get("body") or "{}", 200, mimetype="application/json")

    # -- liveness --------------------------------------------------------------------------
    def _watch(self) -> None:
        every = min(self.fs.stale_after / 4, 30.0)
        while True:
            gevent.sleep(every)
            if self.fs.mode == "callback":
                continue  # nothing to probe: Feishu posts when there is something
            if self.line.judge(self.liveness):
                log.warning("feishu: stale: no pong nor message for over %g s; restarting "
                            "the long connection", self.fs.stale_after)
            if self.liveness.is_stale and not self.liveness.restarted and self.link:
                self.liveness.restarted = True
                self.link.stop()  # the old child and its socket end here
                self.link.start()

    # -- sending ---------------------------------------------------------------------------
    def deliver(self, outbound: Outbound) -> None:
        """Each file (uploaded, then sent), then the text, as replies to the message answered
        (in its thread) or new messages in the chat. `uuid` (the outbound id and the part)
        is Feishu's idempotency key."""
        message_id, thread = _reply_target(outbound)
        parts: list[dict[str, Any]] = []
        for i, f in enumerate(outbound.files):
            parts.append({"msg_type": "file", "content": {}, "name": f["name"],
                          "media_type": f.get("media_type") or "",
                          "path": str(self.services.outbox.workspace / f["path"]),
                          "uuid": f"{outbound.id}-f{i}"})
        text = outbound.text.strip()
        for i in range(0, len(text), MAX_TEXT):
            parts.append({"msg_type": "text", "content": {"text": text[i:i + MAX_TEXT]},
                          "uuid": f"{outbound.id}-t{i // MAX_TEXT}"})
        for part in parts:
            answer = self._call({"op": "send", "chat": outbound.chat, "reply_to": message_id,
                                 "thread": thread, **part},
                                self.fs.request_timeout * 2 + CALL_MARGIN)
            if "error" in answer:
                if answer.get("retry"):
                    raise RetryLater(str(answer["error"]), answer.get("retry_after"))
                raise DeliveryRefused(str(answer["error"]))
        self.liveness.mark_out()


def _reply_target(outbound: Outbound) -> tuple[str | None, bool]:
    """The Feishu message a reply answers and whether it was in a thread, from its client
    id (`om_...`, marked `:thread`)."""
    given = outbound.reply_to or ""
    thread = given.endswith(THREAD)
    message_id = given.removesuffix(THREAD)
    return (message_id or None) if message_id.startswith("om_") else None, thread
