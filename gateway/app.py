"""The composition root: the one place that builds every part and hands each its collaborators.

Nothing else in the gateway looks a collaborator up; if a part needs something, it is passed in
here. `build_gateway` is also what tests call to get a real app without a server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask
from flask_sock import Sock

import webui
from gateway.api.errors import register_error_handlers
from gateway.api.pages import build_pages
from gateway.channels.base import Channel
from gateway.channels.http import HttpChannel
from gateway.channels.websocket import WebSocketChannel
from gateway.config import Config
from gateway.guards.chain import GuardChain, RequirePrincipal
from gateway.guards.tokens import TokenAuthenticator
from gateway.models.registry import build_pools
from gateway.pipeline import Pipeline
from gateway.sessions import SessionManager
from gateway.store import Store
from gateway.workspace import Workspace

log = logging.getLogger(__name__)

WS_PING_INTERVAL = 25


@dataclass
class Gateway:
    app: Flask
    config: Config
    workspace: Workspace
    store: Store
    pipeline: Pipeline
    channels: list[Channel] = field(default_factory=list)

    def start(self) -> None:
        for channel in self.channels:
            channel.start()

    def stop(self, timeout: float) -> list[str]:
        """Finish in-flight replies (up to `timeout`), then stop every part.

        Returns every failure instead of stopping at the first, so one broken channel does not
        keep the others (or the database) open.
        """
        problems: list[str] = []
        if not self.pipeline.drain(timeout):
            problems.append(f"messages still in flight after {timeout:.0f}s were abandoned")
        for channel in self.channels:
            try:
                channel.stop()
            except Exception as e:  # collect, keep stopping the rest
                log.exception("channel %s failed to stop", channel.name)
                problems.append(f"channel {channel.name}: {e}")
        for pool in self.pipeline.models.values():
            pool.close()
        self.store.close()
        return problems


def build_gateway(workspace: Workspace, config: Config) -> Gateway:
    store = Store(workspace.db_url)
    authenticator = TokenAuthenticator(store, config.auth.tokens)
    pipeline = Pipeline(
        store=store,
        sessions=SessionManager(store, config.gateway.session_timeout),
        guards=GuardChain([RequirePrincipal()]),
        models=build_pools(config, str(workspace.config_path)),
        chat_model=config.chat_model(),
        context_tokens=config.gateway.context_tokens,
    )

    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.gateway.max_body_bytes
    app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": WS_PING_INTERVAL,
                                         "max_message_size": config.gateway.max_body_bytes}
    register_error_handlers(app, config.gateway.max_body_bytes)
    app.register_blueprint(build_pages(authenticator, store, Path(webui.__file__).parent,
                                       int(config.auth.token_expire)))

    http = HttpChannel(pipeline.handle, authenticator)
    app.register_blueprint(http.blueprint)
    websocket = WebSocketChannel(pipeline.handle, authenticator, Sock(app))
    return Gateway(app, config, workspace, store, pipeline, [http, websocket])
