"""The `alerts:` section of config.yaml, with the guide's rules as defaults.

```yaml
alerts:
  rules:                      # each: above, window (how long it must hold)
    latency: {above: 2s, window: 1m}           # message latency p95
    model_failure_rate: {above: 5%, window: 1m}
    cpu: {above: 80%, window: 1m}
    memory: {above: 80%, window: 1m}
    channel_stale: {window: 10s}               # a channel silent beyond its own bound
  cooldown: 10m
  notify:
    - {type: webhook, url: "https://..."}
    - {type: smtp, host: ..., port: 587, starttls: true, username: ..., password: ..., ...}
    - {type: wecom, webhook_url: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=..."}
    - {type: dingtalk, webhook_url: "...", secret: "${keyring:dingtalk}"}
```

Durations read as elsewhere in config.yaml ("1m", "10s", 30); percents as "5%" or 5. A wrong
key is refused with its path, like every other section.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from gateway.common.options import parse_duration


def parse_percent(value: Any) -> float:
    """`"5%"`, `"5 %"` or `5` -> 5.0 (a percent, not a fraction)."""
    if isinstance(value, bool):
        raise ValueError("expected a percent such as '5%' or 80")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
        try:
            return float(text)
        except ValueError:
            pass
    raise ValueError("expected a percent such as '5%' or 80")


def _http_url(value: Any) -> Any:
    if isinstance(value, str) and not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
WindowDuration = Annotated[float, BeforeValidator(parse_duration), Field(ge=1, le=3600)]
Percent = Annotated[float, BeforeValidator(parse_percent), Field(ge=0, le=100)]
Url = Annotated[str, BeforeValidator(_http_url)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)


class LatencyRule(_Section):
    """Message latency p95 (arrival to reply) over the last `window`, above `above` for all of
    `window`. With fewer than `min_count` messages in the window there is no p95 to judge (a
    single slow first answer while the model loads is not an outage)."""

    enabled: bool = True
    above: Duration = 2.0
    window: WindowDuration = 60.0
    min_count: int = Field(5, ge=1)


class FailureRateRule(_Section):
    """Percent of model calls (each endpoint attempt) that failed over the last `window`."""

    enabled: bool = True
    above: Percent = 5.0
    window: WindowDuration = 60.0
    min_count: int = Field(5, ge=1)


class ResourceRule(_Section):
    """Machine CPU or memory use, sampled each second, above `above` for all of `window`."""

    enabled: bool = True
    above: Percent = 80.0
    window: WindowDuration = 60.0


class ChannelStaleRule(_Section):
    """A channel connected but silent beyond its own bound (no message in, no probe back:
    `gateway.channels.liveness`) for all of `window`. The channel restarts once first; a
    restart that helped within the window raises nothing."""

    enabled: bool = True
    window: WindowDuration = 10.0


class RulesConfig(_Section):
    latency: LatencyRule = Field(default_factory=LatencyRule)
    model_failure_rate: FailureRateRule = Field(default_factory=FailureRateRule)
    cpu: ResourceRule = Field(default_factory=ResourceRule)
    memory: ResourceRule = Field(default_factory=ResourceRule)
    channel_stale: ChannelStaleRule = Field(default_factory=ChannelStaleRule)


class WebhookNotify(_Section):
    """POSTs {"rule", "state", "value", "threshold", "at", "message"} as JSON."""

    type: Literal["webhook"]
    url: Url
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    timeout: Duration = 10.0


class SmtpNotify(_Section):
    type: Literal["smtp"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = Field(False, description="SMTPS from the first byte (port 465)")
    username: str | None = None
    password: str | None = Field(None, repr=False)
    from_: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _one_tls_mode(self) -> SmtpNotify:
        if self.ssl and self.starttls:
            raise ValueError("choose ssl: true (port 465) or starttls: true (port 587), "
                             "not both")
        if self.password and not self.username:
            raise ValueError("a password needs a username")
        return self


class WeComNotify(_Section):
    """A WeCom (企业微信) group robot; `mentioned_list` takes user ids or "@all" (text only)."""

    type: Literal["wecom"]
    webhook_url: Url = Field(repr=False)
    msgtype: Literal["text", "markdown"] = "text"
    mentioned_list: list[str] = Field(default_factory=list)
    mentioned_mobile_list: list[str] = Field(default_factory=list)
    timeout: Duration = 10.0


class DingTalkNotify(_Section):
    """A DingTalk (钉钉) group robot; `secret` is its 加签 secret (SEC...), if it has one."""

    type: Literal["dingtalk"]
    webhook_url: Url = Field(repr=False)
    secret: str | None = Field(None, repr=False)
    at_mobiles: list[str] = Field(default_factory=list)
    at_all: bool = False
    timeout: Duration = 10.0


Notify = Annotated[WebhookNotify | SmtpNotify | WeComNotify | DingTalkNotify,
                   Field(discriminator="type")]


class ErrorMailConfig(_Section):
    """Error log lines by email through the first `smtp` entry of `notify`: the first at once,
    later ones gathered into at most one mail per `interval`."""

    enabled: bool = True
    interval: Duration = Field(600.0, ge=1)


class AlertsConfig(_Section):
    enabled: bool = True
    rules: RulesConfig = Field(default_factory=RulesConfig)
    cooldown: Duration = Field(600.0, ge=0)
    notify: list[Notify] = Field(default_factory=list)
    error_mail: ErrorMailConfig = Field(default_factory=ErrorMailConfig)

    def smtp(self) -> SmtpNotify | None:
        return next((n for n in self.notify if isinstance(n, SmtpNotify)), None)

    def longest_window(self) -> float:
        """The metrics window must hold at least this many seconds."""
        rules = self.rules
        return max(rules.latency.window, rules.model_failure_rate.window)
