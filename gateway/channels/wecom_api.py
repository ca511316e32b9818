"""WeCom's server API (企业微信服务端API) as the WeCom channel uses it: one client per start
with its access token cached, WeCom's `{"errcode", "errmsg"}` envelope as an exception, each
error code a sentence saying what to fix, and text cut to WeCom's byte limits.

- `GET /cgi-bin/gettoken?corpid=&corpsecret=` gives `access_token` for `expires_in` seconds
  (7,200). Every other call carries `?access_token=`; WeCom ends a token early when another
  gettoken for the same app elsewhere replaced it, so a call answered 40014 (invalid), 42001
  (expired) or 40001 (invalid credential) fetches a new token and is tried once more, never
  twice: a secret that is wrong stays wrong.
- `POST /cgi-bin/message/send`, `POST /cgi-bin/media/upload?type=`, `GET /cgi-bin/media/get`
  (the file itself, or the envelope when it failed), `GET /cgi-bin/agent/get` (the probe).

Clients are made once per start and share one SSL context per process (made on first use).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from email.message import Message as Header
from typing import IO, Any

import httpx

from gateway.channels.tls import ssl_context

TEXT_LIMIT = 2048  # bytes of UTF-8 in a text message's content
TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # fetch a new token, try once more
RATE_LIMITED = frozenset({45009, 45033, -1})  # over the API's rate or busy: later
EARLY = 300.0  # seconds before `expires_in` a token is fetched again


class WeComError(Exception):
    """A non-zero `errcode` (or an answer that is not WeCom's envelope: `errcode` None)."""

    def __init__(self, errcode: int | None, errmsg: str, status: int = 200) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.status = status

    @property
    def temporary(self) -> bool:
        """WeCom may take the same call later (a rate limit, busy, a 5xx)."""
        return self.errcode in RATE_LIMITED or self.status >= 500 or self.status == 429

    def explain(self) -> str:
        return explain(self.errcode, self.errmsg)


# What the owner does about each code, naming the config key (`channels list` shows it).
_FIXES: dict[int, str] = {
    40001: "WeCom refused the app secret: set channels.wecom.secret to the Secret of the "
           "self-built app (应用管理 > the app > Secret)",
    40013: "WeCom does not know this corp id: set channels.wecom.corp_id to 我的企业 > 企业ID",
    40056: "WeCom does not know this agent id: set channels.wecom.agent_id to the app's "
           "AgentId (应用管理 > the app)",
    60020: "WeCom refused this machine's IP address (not allowed): add the gateway's public "
           "IP to the app's 企业可信IP (Trusted IP) in the WeCom admin console",
    48002: "the app may not call this API: check the app's permissions (API接口权限)",
    81013: "the user is not in the app's visible range (可见范围): add them in the admin "
           "console, or check the chat's userid",
    -40001: "a callback's signature did not match: set channels.wecom.token to the app's "
            "接收消息 Token",
    -40005: "a callback was not for this company: check channels.wecom.corp_id, and "
            "channels.wecom.encoding_aes_key (a wrong key decrypts to the wrong corp id)",
    -40007: "a callback could not be decrypted: set channels.wecom.encoding_aes_key to the "
            "app's 接收消息 EncodingAESKey",
}


def explain(errcode: int | None, errmsg: str) -> str:
    """A sentence for `channels list` and the outbox's history: the code, WeCom's words,
    and what to fix where one is known."""
    fix = _FIXES.get(errcode) if errcode is not None else None
    said = f"WeCom answered {errcode}: {errmsg}" if errcode is not None else errmsg
    if errcode in (42001, 40014):
        fix = "the access token ended and a new one was refused too: check channels.wecom.secret"
    if errcode in RATE_LIMITED:
        fix = "over WeCom's rate limit or busy; sent later"
    return f"{fix} ({said})" if fix else said


class WeComApi:
    """`<api_base>/cgi-bin/<path>`; `call` returns the envelope (errcode 0) or raises
    WeComError (httpx.HTTPError for the network). `on_token` is told when a token arrives."""

    def __init__(self, api_base: str, corp_id: str, secret: str, timeout: float = 10.0,
                 on_token: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base = api_base.rstrip("/")
        self.corp_id = corp_id
        self.secret = secret
        self.clock = clock
        self.on_token = on_token
        self.client = httpx.Client(timeout=timeout, verify=ssl_context() if
                                   self.base.startswith("https:") else False)
        self._token: tuple[str, float] | None = None  # (token, monotonic expiry)
        self._fetching = threading.Lock()  # one gettoken at a time (a gevent lock when patched)

    def close(self) -> None:
        self.client.close()

    # -- the token -----------------------------------------------------------------------
    def token(self, fresh: bool = False) -> str:
        """The cached access token, fetched when missing, near its end, or `fresh` (a call
        said it ended)."""
        stale = self._token
        with self._fetching:
            if self._token is not None and self._token is not stale and fresh:
                return self._token[0]  # another greenlet fetched one meanwhile
            if not fresh and self._token is not None and self.clock() < self._token[1]:
                return self._token[0]
            answer = self._envelope(self.client.get(f"{self.base}/cgi-bin/gettoken", params={
                "corpid": self.corp_id, "corpsecret": self.secret}))
            lifetime = float(answer.get("expires_in") or 7200)
            self._token = (str(answer["access_token"]),
                           self.clock() + max(lifetime - EARLY, lifetime / 2))
        if self.on_token is not None:
            self.on_token()
        return self._token[0]

    def forget_token(self) -> None:
        """The next call fetches a new token (a stale channel's one restart)."""
        self._token = None

    # -- calls ---------------------------------------------------------------------------
    def call(self, method: str, path: str, *, json: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None,
             files: dict[str, tuple[str, IO[bytes], str]] | None = None) -> dict[str, Any]:
        """One API call with the token; a token error fetches a new one and tries once more."""
        for attempt in (1, 2):
            query = {**(params or {}), "access_token": self.token(fresh=attempt == 2)}
            answer = self.client.request(method, f"{self.base}/cgi-bin/{path}", params=query,
                                         json=json, files=files)
            try:
                return self._envelope(answer)
            except WeComError as e:
                if e.errcode not in TOKEN_ERRORS or attempt == 2:
                    raise
                if files:  # the upload's stream was read: start it again
                    for _, stream, _ in files.values():
                        stream.seek(0)
        raise AssertionError("unreachable")

    def download(self, media_id: str, into: IO[bytes]) -> tuple[str | None, str | None]:
        """`media/get` streamed into `into`: (file name, media type) from WeCom's headers.
        A failure answers the JSON envelope instead of the file (a token error tried once
        more, as `call`)."""
        for attempt in (1, 2):
            query = {"media_id": media_id, "access_token": self.token(fresh=attempt == 2)}
            with self.client.stream("GET", f"{self.base}/cgi-bin/media/get",
                                    params=query) as answer:
                kind = answer.headers.get("Content-Type", "")
                if answer.status_code == 200 and not kind.startswith(("application/json",
                                                                      "text/plain")):
                    for chunk in answer.iter_bytes():
                        into.write(chunk)
                    return _file_name(answer.headers.get("Content-Disposition", "")), \
                        kind.split(";")[0].strip() or None
                answer.read()
            try:
                self._envelope(answer)
                raise WeComError(None, "media/get answered no file")
            except WeComError as e:
                if e.errcode not in TOKEN_ERRORS or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _envelope(answer: httpx.Response) -> dict[str, Any]:
        try:
            body = answer.json()
        except ValueError:
            raise WeComError(None, f"WeCom answered HTTP {answer.status_code}, not JSON",
                             answer.status_code) from None
        if not isinstance(body, dict):
            raise WeComError(None, "the answer is not a JSON object", answer.status_code)
        code = body.get("errcode", 0)
        if answer.status_code >= 400 or code != 0:
            raise WeComError(code if isinstance(code, int) else None,
                             str(body.get("errmsg") or "no errmsg"), answer.status_code)
        return body


def _file_name(disposition: str) -> str | None:
    """`attachment; filename="a.jpg"` (or RFC 5987's filename*=UTF-8''...) -> a.jpg."""
    header = Header()
    header["Content-Disposition"] = disposition
    name = header.get_filename()
    return (name.strip() or None) if name else None


def split_utf8(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Pieces of at most `limit` bytes of UTF-8, never cutting a character; a cut prefers
    the last line break in the second half of the piece."""
    pieces: list[str] = []
    data = text.encode("utf-8")
    while len(data) > limit:
        cut = limit
        while cut > 0 and (data[cut] & 0xC0) == 0x80:  # a continuation byte: back up
            cut -= 1
        newline = data.rfind(b"\n", 0, cut)
        if newline >= limit // 2:
            cut = newline + 1
        pieces.append(data[:cut].decode("utf-8"))
        data = data[cut:]
    if data.strip():
        pieces.append(data.decode("utf-8"))
    return pieces
