"""`channels.feishu:` in config.yaml (see `gateway.channels.feishu` for the channel)."""

from __future__ import annotations

import secrets
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from gateway.channels.base import SwitchedOnByConfig
from gateway.common.options import Duration

DOMAINS = {"feishu": "https://open.feishu.cn", "lark": "https://open.larksuite.com"}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Proves to the guard chain that a message came through this channel (as MQTT's key does):
# made per process, never leaves it.
_CHANNEL_KEY = secrets.token_urlsafe(32)


class FeishuOptions(SwitchedOnByConfig):
    """An app_id switches it on. `domain`: `feishu` (open.feishu.cn), `lark`
    (open.larksuite.com) or the origin of a proxy (https; http only on this machine)."""

    on_key = "app_id"

    app_id: str | None = None
    app_secret: str | None = Field(None, repr=False)
    mode: Literal["long_connection", "callback"] = "long_connection"
    domain: str = "feishu"
    verification_token: str | None = Field(None, repr=False)
    encrypt_key: str | None = Field(None, repr=False)
    callback_path: str = "/api/feishu/events"
    groups: Literal["mention", "all", "off"] = "mention"
    stale_after: Duration = Field(300.0, ge=1, le=86400)
    request_timeout: Duration = Field(30.0, ge=1, le=300)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if value in DOMAINS:
            return value
        parts = urlsplit(value)
        local = parts.scheme == "http" and parts.hostname in LOOPBACK
        if not (parts.scheme == "https" or local) or not parts.hostname or \
                parts.path.strip("/") or parts.query or "@" in parts.netloc:
            raise ValueError("expected feishu, lark, or an https origin such as "
                             "https://open.feishu.cn (no path)")
        return value.rstrip("/")

    @field_validator("callback_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or " " in value:
            raise ValueError("expected a path such as /api/feishu/events")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FeishuOptions:
        if not self.enabled:
            return self
        if not self.app_id or not self.app_secret:
            raise ValueError('app_id and app_secret are required to switch feishu on, e.g. '
                             'app_id: "cli_a1b2c3", app_secret: "${FEISHU_APP_SECRET}" (the '
                             "app's Credentials & Basic Info page)")
        if self.mode == "callback" and not (self.verification_token or self.encrypt_key):
            raise ValueError("mode: callback needs verification_token or encrypt_key (Events "
                             "& Callbacks > Encryption Strategy), or anyone could post events")
        return self

    @property
    def origin(self) -> str:
        return DOMAINS.get(self.domain, self.domain)

    @property
    def bot_token(self) -> str:
        """The channel's credential for the guard chain (`PlatformToken`): the app's own
        secrets prove Feishu; this proves the message came through this channel."""
        return _CHANNEL_KEY
