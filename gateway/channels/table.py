"""The channel table: every channel the gateway can run, by its `channels:` config key.

A new channel is one module with a `Channel` subclass and one line here. Entries are import
paths so that reading config.yaml (the CLI does it often) never imports a channel's libraries.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from gateway.common.options import ConfigError, describe_errors

if TYPE_CHECKING:
    from gateway.channels.base import Channel
    from gateway.config import Config

CHANNELS: dict[str, str] = {
    "http": "gateway.channels.http:HttpChannel",
    "websocket": "gateway.channels.websocket:WebSocketChannel",
    "console": "gateway.api.console:ConsoleChannel",
    "enterprise_im": "gateway.channels.enterprise_im:EnterpriseImChannel",
    "openai": "gateway.channels.openai:OpenAIChannel",
    "mqtt": "gateway.channels.mqtt:MqttChannel",
    "telegram": "gateway.channels.telegram:TelegramChannel",
    "wecom": "gateway.channels.wecom:WeComChannel",
    "feishu": "gateway.channels.feishu:FeishuChannel",
    "slack": "gateway.channels.slack:SlackChannel",
    "dingtalk": "gateway.channels.dingtalk:DingTalkChannel",
}


def channel_class(name: str) -> type[Channel]:
    module, _, attribute = CHANNELS[name].partition(":")
    cls: type[Channel] = getattr(import_module(module), attribute)
    return cls


def channel_options(config: Config, source: str) -> dict[str, BaseModel]:
    """Each channel's options, checked by its own `Options` class; raises ConfigError listing
    every problem (an unknown channel name among them)."""
    problems = [f"channels.{name}: channel {name!r} is not supported yet; this version has "
                f"{', '.join(CHANNELS)}" for name in config.channels if name not in CHANNELS]
    options: dict[str, BaseModel] = {}
    for name in CHANNELS:
        given: dict[str, Any] = config.channels.get(name) or {}
        try:
            options[name] = channel_class(name).Options.model_validate(given)
        except ValidationError as e:
            problems.extend(describe_errors(e, ("channels", name), config.expanded))
    if problems:
        raise ConfigError(source, problems)
    return options


def chat_platforms() -> frozenset[str]:
    """The channels whose senders are people on a platform (see `Channel.chat_platform`)."""
    return frozenset(name for name in CHANNELS if channel_class(name).chat_platform)
