"""Feishu / Lark's open API as the Feishu channel uses it, through the SDK (`lark-oapi`), in the
channel's child process (`feishu_ws_host`): never imported by the gateway process (the SDK's
import costs ~3 s of CPU and ~160 MB, which the gateway's loop and memory should not pay).

Calls are the SDK's sync client (`requests`), run by the child in a worker thread. The tenant
access token is fetched and cached by the SDK (`TokenManager`, renewed 10 min before it
expires); a token the platform calls invalid (99991663 and its kin) is dropped from that cache
and the call made once more. Every answer is a dict for the gateway: `{"ok": true, ...}` or
`{"error": "<sentence>", "code": n, "retry": bool, "retry_after": s | None}`.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import lark_oapi as lark  # type: ignore[import-untyped]
from lark_oapi.api.im.v1 import (  # type: ignore[import-untyped]
    CreateFileRequest,
    CreateFileRequestBody,
    CreateImageRequest,
    CreateImageRequestBody,
    CreateMessageRequest,
    CreateMessageRequestBody,
    GetMessageResourceRequest,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
)
from lark_oapi.core.exception import ObtainAccessTokenException  # type: ignore[import-untyped]
from lark_oapi.core.token import TokenManager  # type: ignore[import-untyped]

# the tenant access token is invalid or expired: fetch a new one and try once more
TOKEN_INVALID = frozenset({99991661, 99991663, 99991664, 99991665, 99991668})
RATE_LIMITED = frozenset({99991400, 99991402, 11232, 11233})
SECRET_REFUSED = frozenset({10003, 10014, 99991665})  # app_id/app_secret wrong
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")


class ApiError(Exception):
    def __init__(self, code: int, msg: str, retry: bool,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {msg}")
        self.code, self.msg, self.retry, self.retry_after = code, msg, retry, retry_after

    def answer(self) -> dict[str, Any]:
        return {"error": describe(self.code, self.msg), "code": self.code, "retry": self.retry,
                "retry_after": self.retry_after}


def describe(code: int, msg: str) -> str:
    """The platform's error as the owner reads it in `channels list` and the outbox."""
    if code in SECRET_REFUSED:
        return (f"Feishu refused the app's credentials ({code} {msg}): check "
                f"channels.feishu.app_id and channels.feishu.app_secret")
    if code in RATE_LIMITED:
        return f"Feishu's rate limit ({code} {msg}); trying later"
    return f"Feishu answered {code}: {msg}"


class FeishuApi:
    """One app's client: `domain` is the open platform's origin (Feishu, Lark or a proxy)."""

    def __init__(self, app_id: str, app_secret: str, domain: str, timeout: float) -> None:
        self.app_id = app_id
        self.client = (lark.Client.builder().app_id(app_id).app_secret(app_secret)
                       .domain(domain).timeout(timeout).log_level(lark.LogLevel.WARNING)
                       .build())

    # -- calls ---------------------------------------------------------------------------
    def bot_info(self) -> dict[str, Any]:
        """`GET /open-apis/bot/v3/info`: the bot's open_id (to tell its @mentions) and name;
        also the first proof that app_id and app_secret are right."""
        request = (lark.BaseRequest.builder().http_method(lark.HttpMethod.GET)
                   .uri("/open-apis/bot/v3/info")
                   .token_types({lark.AccessTokenType.TENANT}).build())
        response = self._call(lambda: self.client.request(request))
        body = json.loads(response.raw.content or b"{}")
        return dict(body.get("bot") or {})

    def send(self, line: dict[str, Any]) -> dict[str, Any]:
        """One message: a reply to `reply_to` (in its thread when `thread`), or a new message
        in `chat`. `uuid` is the platform's idempotency key (the outbound id and part)."""
        msg_type, content = line["msg_type"], line["content"]
        if msg_type in ("image", "file"):
            msg_type, content = self._upload(Path(line["path"]), line["name"],
                                             line.get("media_type") or "")
        uuid = str(line["uuid"])[:50]
        if line.get("reply_to"):
            body = (ReplyMessageRequestBody.builder().msg_type(msg_type)
                    .content(json.dumps(content, ensure_ascii=False))
                    .reply_in_thread(bool(line.get("thread"))).uuid(uuid).build())
            request = (ReplyMessageRequest.builder().message_id(line["reply_to"])
                       .request_body(body).build())
            response = self._call(lambda: self.client.im.v1.message.reply(request))
        else:
            created = (CreateMessageRequestBody.builder().receive_id(line["chat"])
                       .msg_type(msg_type).content(json.dumps(content, ensure_ascii=False))
                       .uuid(uuid).build())
            request_c = (CreateMessageRequest.builder().receive_id_type("chat_id")
                         .request_body(created).build())
            response = self._call(lambda: self.client.im.v1.message.create(request_c))
        return {"ok": True, "message_id": getattr(response.data, "message_id", None)}

    def download(self, message_id: str, key: str, kind: str) -> dict[str, Any]:
        """A message's image or file (`GET im/v1/messages/:id/resources/:key`), base64."""
        request = (GetMessageResourceRequest.builder().message_id(message_id).file_key(key)
                   .type(kind).build())
        response = self._call(lambda: self.client.im.v1.message_resource.get(request))
        data = response.file.read() if response.file is not None else b""
        return {"ok": True, "name": response.file_name or "",
                "data": base64.b64encode(data).decode("ascii")}

    # -- the parts ---------------------------------------------------------------------------
    def _upload(self, path: Path, name: str, media_type: str) -> tuple[str, dict[str, str]]:
        """Upload a reply's file: images through `im/v1/images`, others `im/v1/files`."""
        with path.open("rb") as data:
            if media_type in IMAGE_TYPES:
                body = CreateImageRequestBody.builder().image_type("message").image(data).build()
                image = CreateImageRequest.builder().request_body(body).build()
                found = self._call(lambda: self.client.im.v1.image.create(image))
                return "image", {"image_key": found.data.image_key}
            file_type = {"application/pdf": "pdf", "application/msword": "doc"}.get(
                media_type, "stream")
            body_f = (CreateFileRequestBody.builder().file_type(file_type).file_name(name)
                      .file(data).build())
            upload = CreateFileRequest.builder().request_body(body_f).build()
            sent = self._call(lambda: self.client.im.v1.file.create(upload))
            return "file", {"file_key": sent.data.file_key}

    def _call(self, make: Any) -> Any:
        """The SDK call; once more with a fresh token when the platform calls it invalid."""
        for attempt in (1, 2):
            try:
                response = make()
            except ObtainAccessTokenException as e:
                raise ApiError(int(e.code or 0), str(e.msg or e), retry=True) from e
            if response.success():
                return response
            code = int(response.code or 0)
            if code in TOKEN_INVALID and attempt == 1:
                TokenManager.cache.set(f"self_tenant_token:{self.app_id}", "", 0)
                continue
            raise _error(response, code)
        raise AssertionError("unreachable")


def _error(response: Any, code: int) -> ApiError:
    raw = getattr(response, "raw", None)
    status = getattr(raw, "status_code", 0) or 0
    headers = {k.lower(): v for k, v in (getattr(raw, "headers", None) or {}).items()}
    msg = str(response.msg or f"HTTP {status}")
    if status == 429 or code in RATE_LIMITED:
        reset = headers.get("x-ogw-ratelimit-reset")
        return ApiError(code or 429, msg, retry=True,
                        retry_after=float(reset) if reset and reset.isdigit() else None)
    return ApiError(code or status, msg, retry=status >= 500 or code in TOKEN_INVALID
                    or code in SECRET_REFUSED)
