"""The sections the guard chain is built from: `auth:` (tokens, JWT, rate limits, lockout,
address lists), `console:` (who may open it) and `security:` (strangers on chat platforms)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from gateway.common.options import LOOPBACK, Duration, Networks, Section
from gateway.guards.rate_limit import parse_rate


class RateLimitConfig(Section):
    """The guide's `auth.rate_limit`: requests per window, globally and per client address."""

    global_: str = Field("1000/min", alias="global")
    per_ip: str = "100/min"
    per_sender: str = Field("30/min", description="each sender of a chat platform")
    storage: str = Field("memory://", description="limits storage URI; redis://... lets "
                         "several processes share the counters (needs the redis package)")
    exempt: Networks = Field(default_factory=lambda: list(LOOPBACK),
                             description="addresses never counted (default: loopback)")

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        from limits.errors import ConfigurationError
        from limits.storage import storage_from_string

        try:
            storage_from_string(value)
        except (ConfigurationError, ValueError) as e:
            raise ValueError(f"cannot use {value!r}: {e}") from e
        return value

    @field_validator("global_", "per_ip", "per_sender")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)
        return value


class LockoutConfig(Section):
    """`failures` bad credentials from one address within `window` lock it out for
    `duration`; loopback is not exempt unless listed in `exempt`."""

    failures: int = Field(10, ge=1)
    window: Duration = 60.0
    duration: Duration = 300.0
    exempt: Networks = Field(default_factory=list)


class ConsoleConfig(Section):
    allow_ips: Networks = Field(default_factory=lambda: list(LOOPBACK),
                                description="who may open the console and its APIs")


class AuthConfig(Section):
    jwt_secret: str | None = Field(None, min_length=32, description="HS256 key for JWTs")
    token_expire: Duration = 86400.0
    tokens: list[str] = Field(default_factory=list, description="static API tokens")
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    lockout: LockoutConfig = Field(default_factory=LockoutConfig)
    allow_ips: Networks = Field(default_factory=lambda: ["0.0.0.0/0", "::/0"],
                                description="who may use the entries other than the console")
    trusted_proxies: Networks = Field(default_factory=list,
                                      description="X-Forwarded-For is believed only from these")

    def is_configured(self) -> bool:
        """True when the owner set up auth on purpose (needed before binding off loopback)."""
        return bool(self.jwt_secret or self.tokens)


class SecurityConfig(Section):
    """Strangers on chat platforms (the guide's section 4.1); see gateway.guards.stranger."""

    stranger_mode: Literal["verification_code", "direct_block", "open"] = "verification_code"
    code_expire: Duration = Field(300.0, gt=0)
    max_code_attempts: int = Field(5, ge=1)
    allowlist: list[str] = Field(default_factory=list, description='"<channel>:<sender id>"')
    require_approval: bool = False

    @field_validator("allowlist")
    @classmethod
    def _channel_and_sender(cls, value: list[str]) -> list[str]:
        for entry in value:
            channel, _, sender = entry.partition(":")
            if not channel or not sender:
                raise ValueError(f"{entry!r}: write \"<channel>:<sender id>\", e.g. "
                                 "\"enterprise_im:alice\"")
        return value
