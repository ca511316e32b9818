"""What every chat platform's channel shares (Telegram, WeCom, DingTalk, Feishu, Slack).

People on the platform write to it, so the stranger policy checks each sender
(`chat_platform`); it answers through the outbox (a `PushChannel`); and it has one route on the
gateway's web server for the platform's callback (a webhook, an event callback), fixed when
the gateway starts because Flask cannot add routes later: a reload that moves the path says
so and the old path serves until a restart. A reload stops and starts the channel whole, so
no old connection is left to take messages (a known failure of other gateways).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from typing import ClassVar

from flask import Blueprint
from flask.typing import ResponseReturnValue
from gevent.pool import Group

from gateway.channels.base import ChannelOptions, PushChannel, Services

log = logging.getLogger(__name__)


class PlatformChannel(PushChannel):
    chat_platform = True
    path_attr: ClassVar[str] = "callback_path"  # the options' attribute holding the route
    path_key: ClassVar[str] = "callback_path"  # the config key that sets it, for the log
    methods: ClassVar[tuple[str, ...]] = ("POST",)

    def __init__(self, services: Services, options: ChannelOptions) -> None:
        super().__init__(services, options)
        self.path: str = getattr(options, self.path_attr)
        blueprint = Blueprint(self.name, __name__)
        blueprint.add_url_rule(self.path, view_func=self.callback, methods=list(self.methods))
        services.app.register_blueprint(blueprint)
        self.handlers = Group()  # the greenlets answering messages: drained at stop
        self.running = False
        self.recovered = False  # once per process: messages stored but unanswered at start

    @abstractmethod
    def callback(self) -> ResponseReturnValue:
        """The platform's request on `self.path` (refused while the channel is stopped)."""

    def configure(self, options: ChannelOptions) -> None:
        self.stop()
        self.options = options
        if options.enabled:
            self.start()
        path = getattr(options, self.path_attr)
        if path != self.path:
            log.warning("channels.%s.%s now gives the path %s; the gateway serves %s until "
                        "it restarts", self.name, self.path_key, path, self.path)
