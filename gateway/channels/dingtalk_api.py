"""DingTalk's robot, as the channel meets it: the robot message, the outgoing robot's sign, and
the two ways a reply leaves (the session webhook, the robot send API with an access token).

A robot message (stream mode's `/v1.0/im/bot/messages/get` callback, or the outgoing robot's
POST body) carries `msgId`, `conversationType` ("1" one-to-one, "2" a group), `conversationId`,
`senderStaffId` (absent for people outside the organisation) and `senderId`, `text.content`,
and a `sessionWebhook` valid until `sessionWebhookExpiredTime` (milliseconds). A reply goes to
that webhook while it is valid; afterwards (a slow answer, a gateway restart) through the
robot send API: `/v1.0/robot/oToMessages/batchSend` to the person, `/v1.0/robot/groupMessages/
send` to the group, with an access token from `/v1.0/oauth2/accessToken` kept until 5 minutes
before it expires and fetched again once when DingTalk refuses it.

Files out: a reply's picture or file is uploaded with the older open API's `media/upload`
(`oapi.dingtalk.com`, the same app access token as `?access_token=`, multipart field `media`,
`type=image|file`), then sent through the robot send API as `sampleImageMsg` (`photoURL`: the
media id) or `sampleFile` (`mediaId`, `fileName`, `fileType`). A session webhook carries text
and markdown only, so files always take the send API.

Chat ids: a one-to-one chat is named by the person (`senderStaffId`, else `senderId`), a group
by its `conversationId` (DingTalk's start with `cid`): a reply after a restart, with no session
webhook in hand, still knows which send API takes it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.channels.tls import ssl_context
from gateway.core.outbound import DeliveryRefused, RetryLater, parse_retry_after

SIGN_WINDOW = 3600.0  # the outgoing robot's timestamp may be this old (DingTalk: 1 hour)
TOKEN_MARGIN = 300.0  # an access token is fetched again this long before it expires
WEBHOOK_MARGIN = 5.0  # a session webhook this close to expiring is not used
# DingTalk's words for "too many, later": the send APIs' codes, the webhooks' errcodes
THROTTLED_CODES = ("Throttling", "QpsLimit", "LimitExceeded")
THROTTLED_ERRCODES = frozenset({-1, 88, 130101, 410100})
# media/upload's bounds (DingTalk: an image or a file at most 20 MB); larger ones are named
UPLOAD_LIMITS = {"image": 20 * 1024 * 1024, "file": 20 * 1024 * 1024}
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/bmp"})  # type=image
OAPI_TOKEN_ERRCODES = frozenset({40001, 40014, 42001})  # the oapi's "token invalid/expired"
# DingTalk documents no single bound for a robot message's text: 5,000 characters is the
# smallest we have seen given (the markdown of a work notice), far under the 20,000 bytes of a
# robot's message even in CJK (15,000 bytes); a conservative bound, so no piece is cut short.
TEXT_LIMIT = 5000
# the kinds whose content is downloaded (`downloadCode`), with the suffix of a name made up
MEDIA_SUFFIX = {"picture": ".png", "file": "", "video": ".mp4", "audio": ".amr"}


@dataclass(frozen=True)
class RobotMessage:
    """The fields of one robot message the channel uses."""

    msg_id: str
    group: bool
    conversation: str
    sender: str  # senderStaffId, else senderId: the stranger policy's `dingtalk:<id>`
    text: str
    webhook: str
    webhook_expires: float  # Unix seconds
    download_code: str = ""  # a picture's or file's, for the robot's download API
    file_name: str = ""

    @property
    def chat(self) -> str:
        return self.conversation if self.group else self.sender

    @classmethod
    def parse(cls, data: Any) -> RobotMessage | None:
        """The message, or None when it is not one the robot answers (no id, no sender)."""
        if not isinstance(data, dict):
            return None
        msg_id = str(data.get("msgId") or "")
        sender = str(data.get("senderStaffId") or data.get("senderId") or "")
        if not msg_id or not sender:
            return None
        kind = str(data.get("msgtype") or "text")
        found = data.get("content")
        content: dict[str, Any] = found if isinstance(found, dict) else {}
        text, download_code, file_name = "", "", ""
        if kind == "text":
            text = str((data.get("text") or {}).get("content") or "")
        elif kind == "richText":
            parts = content.get("richText") or []
            text = "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
        elif kind in MEDIA_SUFFIX:
            download_code = str(content.get("downloadCode") or "")
            file_name = str(content.get("fileName") or f"{kind}-{msg_id}{MEDIA_SUFFIX[kind]}")
            text = str(content.get("recognition") or "")  # a voice note's transcript
        expires = str(data.get("sessionWebhookExpiredTime") or "")
        return cls(msg_id=msg_id, group=str(data.get("conversationType")) == "2",
                   conversation=str(data.get("conversationId") or ""), sender=sender,
                   text=text.strip(), webhook=str(data.get("sessionWebhook") or ""),
                   webhook_expires=int(expires) / 1000 if expires.isdigit() else 0.0,
                   download_code=download_code, file_name=file_name)


def is_group_chat(chat: str) -> bool:
    """A group's chat id is its conversationId (DingTalk's start with `cid`)."""
    return chat.startswith("cid")


def expected_sign(secret: str, timestamp: str) -> str:
    """The outgoing robot's `sign` header: base64(HMAC-SHA256(secret, timestamp + "\\n" +
    secret)), as DingTalk's robot documentation gives it (the SDK has no helper for it)."""
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def sign_problem(secret: str, timestamp: str, sign: str, now: float) -> str | None:
    """Why the outgoing robot's request is refused, or None when its sign is right and its
    timestamp (milliseconds) within the last hour."""
    if not timestamp.isdigit() or not sign:
        return "the timestamp and sign headers are missing"
    if abs(now - int(timestamp) / 1000) > SIGN_WINDOW:
        return "the timestamp is more than an hour away"
    if not hmac.compare_digest(sign.encode(), expected_sign(secret, timestamp).encode()):
        return "the sign does not match channels.dingtalk.client_secret"
    return None


class RobotApi:
    """The send side, sync httpx (cooperative under gevent): one client, one cached token."""

    def __init__(self, api_base: str, client_id: str, client_secret: str, robot_code: str,
                 oapi_base: str = "https://oapi.dingtalk.com", timeout: float = 15.0) -> None:
        self.api_base = api_base
        self.oapi_base = oapi_base
        self.client_id = client_id
        self.client_secret = client_secret
        self.robot_code = robot_code
        self.http = httpx.Client(timeout=timeout, verify=ssl_context())
        self._token: tuple[str, float] | None = None  # (token, monotonic time to refresh)
        self._token_lock = threading.Lock()  # a greenlet lock under gevent: one fetch at once

    def close(self) -> None:
        self.http.close()

    # -- the session webhook ---------------------------------------------------------------
    def send_webhook(self, url: str, body: dict[str, Any]) -> None:
        """POST one message to a conversation's session webhook (it carries its own right)."""
        answer = self._post(url, body, {})
        said = _json(answer)
        code = said.get("errcode", 0)
        if answer.status_code == 429 or code in THROTTLED_ERRCODES:
            raise RetryLater(f"DingTalk's session webhook is rate limited ({code}: "
                             f"{said.get('errmsg', '')})", _retry_after(answer))
        if answer.status_code >= 500:
            raise RetryLater(f"DingTalk's session webhook answered {answer.status_code}")
        if answer.status_code >= 400 or code:
            raise DeliveryRefused(f"DingTalk's session webhook answered {answer.status_code} "
                                  f"({code}: {said.get('errmsg', answer.text[:200])})")

    # -- the robot send API ----------------------------------------------------------------
    def send_to_person(self, staff_id: str, msg_key: str, param: dict[str, Any]) -> None:
        self._robot("/v1.0/robot/oToMessages/batchSend",
                    {"robotCode": self.robot_code, "userIds": [staff_id], "msgKey": msg_key,
                     "msgParam": json.dumps(param, ensure_ascii=False)})

    def send_to_group(self, conversation: str, msg_key: str, param: dict[str, Any]) -> None:
        self._robot("/v1.0/robot/groupMessages/send",
                    {"robotCode": self.robot_code, "openConversationId": conversation,
                     "msgKey": msg_key, "msgParam": json.dumps(param, ensure_ascii=False)})

    def send_file(self, chat: str, media_id: str, name: str, kind: str) -> None:
        """An uploaded picture or file to a person (a staff id) or a group (`cid...`)."""
        if kind == "image":
            key, param = "sampleImageMsg", {"photoURL": media_id}
        else:
            suffix = Path(name).suffix.lstrip(".").lower()
            key, param = "sampleFile", {"mediaId": media_id, "fileName": name,
                                        "fileType": suffix or "file"}
        if is_group_chat(chat):
            self.send_to_group(chat, key, param)
        else:
            self.send_to_person(chat, key, param)

    def upload(self, path: Path, name: str, media_type: str, kind: str) -> str:
        """The file's media id from `media/upload` (fetching the token again once when the
        oapi calls it expired)."""
        for attempt in (1, 2):
            try:
                with path.open("rb") as stream:
                    answer = self.http.post(
                        self.oapi_base + "/media/upload",
                        params={"access_token": self.token(), "type": kind},
                        files={"media": (name, stream, media_type)})
            except httpx.HTTPError as e:
                raise RetryLater(f"{type(e).__name__} reaching "
                                 f"{httpx.URL(self.oapi_base).host}") from e
            except OSError as e:  # gone from the workspace since the reply was queued
                raise DeliveryRefused(f"the reply's file {name} cannot be read: "
                                      f"{e.strerror or e}") from e
            said = _json(answer)
            code = said.get("errcode", 0)
            if code in OAPI_TOKEN_ERRCODES and attempt == 1:
                self._token = None
                continue
            why = (f"DingTalk's media upload answered {answer.status_code} "
                   f"({code}: {str(said.get('errmsg', answer.text[:200]))[:200]}) for {name}")
            if answer.status_code == 429 or answer.status_code >= 500 or \
                    code in THROTTLED_ERRCODES:
                raise RetryLater(why, _retry_after(answer))
            if answer.status_code >= 400 or code or not said.get("media_id"):
                raise DeliveryRefused(why)
            return str(said["media_id"])
        raise RetryLater(f"DingTalk's media upload refused a fresh token for {name}")

    def download(self, download_code: str, into: Any) -> None:
        """A received picture's or file's bytes into a writable: the robot's download API
        gives a short-lived URL, read as a stream."""
        answer = self._robot("/v1.0/robot/messageFiles/download",
                             {"downloadCode": download_code, "robotCode": self.robot_code})
        url = str(_json(answer).get("downloadUrl") or "")
        if not url:
            raise DeliveryRefused("DingTalk's download API answered without a downloadUrl")
        try:
            with self.http.stream("GET", url) as got:
                if got.status_code != 200:
                    raise RetryLater(f"DingTalk's file download answered {got.status_code}")
                for chunk in got.iter_bytes():
                    into.write(chunk)
        except httpx.HTTPError as e:
            raise RetryLater(f"{type(e).__name__} downloading the file") from e

    def _robot(self, path: str, body: dict[str, Any]) -> httpx.Response:
        for attempt in (1, 2):
            answer = self._post(self.api_base + path, body,
                                {"x-acs-dingtalk-access-token": self.token()})
            if answer.status_code == 401 and attempt == 1:
                self._token = None  # expired or revoked early: fetch it once more
                continue
            _raise_for(answer, "the robot API")
            break
        return answer

    def token(self) -> str:
        """The access token, fetched when there is none or it is near its end."""
        with self._token_lock:
            if self._token is not None and time.monotonic() < self._token[1]:
                return self._token[0]
            answer = self._post(self.api_base + "/v1.0/oauth2/accessToken",
                                {"appKey": self.client_id, "appSecret": self.client_secret}, {})
            if answer.status_code in (400, 401, 403):
                raise DeliveryRefused(
                    f"DingTalk refused the app's credentials ({answer.status_code} "
                    f"{_json(answer).get('code', '')}): check channels.dingtalk.client_id "
                    "and client_secret")
            _raise_for(answer, "the accessToken API")
            said = _json(answer)
            token, expires = str(said.get("accessToken") or ""), said.get("expireIn")
            if not token or not isinstance(expires, int):
                raise RetryLater("DingTalk's accessToken API answered without a token")
            self._token = (token, time.monotonic() + max(0.0, expires - TOKEN_MARGIN))
            return token

    def _post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        try:
            return self.http.post(url, json=body, headers=headers)
        except httpx.HTTPError as e:
            host = httpx.URL(url).host
            raise RetryLater(f"{type(e).__name__} reaching {host}") from e


def split_lines(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Pieces of at most `limit` characters, cut after the last line break in a piece (a line
    longer than `limit` is cut where the limit falls); blank pieces are left out."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit) + 1 or limit
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return [piece.strip("\n") for piece in pieces if piece.strip()]


def _raise_for(answer: httpx.Response, what: str) -> None:
    """RetryLater for rate limits, 5xx; DeliveryRefused for what DingTalk will never take."""
    if answer.status_code < 400:
        return
    said = _json(answer)
    code, message = str(said.get("code", "")), str(said.get("message", ""))[:200]
    why = f"DingTalk's {what} answered {answer.status_code} ({code}: {message})"
    if answer.status_code == 429 or answer.status_code >= 500 or \
            any(word in code for word in THROTTLED_CODES):
        raise RetryLater(why, _retry_after(answer))
    raise DeliveryRefused(why)


def _retry_after(answer: httpx.Response) -> float | None:
    return parse_retry_after(answer.headers.get("Retry-After"))


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        said = answer.json()
    except ValueError:
        return {}
    return said if isinstance(said, dict) else {}
