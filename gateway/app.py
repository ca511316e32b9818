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
from gateway.api.admin import build_admin
from gateway.api.errors import register_error_handlers
from gateway.api.login_codes import LoginCodes, build_login_codes
from gateway.api.pages import build_pages
from gateway.channels.base import Channel
from gateway.channels.http import HttpChannel
from gateway.channels.websocket import WebSocketChannel
from gateway.chat import ChatResponder
from gateway.config import Config
from gateway.guards.chain import GuardChain, RequirePrincipal
from gateway.guards.tokens import TokenAuthenticator
from gateway.knowledge import KnowledgeBase
from gateway.models.pool import ModelPool
from gateway.models.registry import build_pools
from gateway.pipeline import Pipeline
from gateway.reload import Reloader
from gateway.sessions import SessionManager
from gateway.skills.catalog import SkillLoader
from gateway.skills.hostpool import SkillHostPool
from gateway.store import Store
from gateway.tools import Tool, build_tools
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
    reloader: Reloader
    authenticator: TokenAuthenticator
    channels: list[Channel] = field(default_factory=list)
    retired_pools: list[ModelPool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reloader.on_config = self.apply_config  # a valid config.yaml edit lands here

    def start(self) -> None:
        """Load the skills, watch the workspace, start the channels."""
        self.reloader.start()
        for channel in self.channels:
            channel.start()

    def apply_config(self, config: Config) -> None:
        """Take a new, already validated config.yaml: models and session settings swap now.

        The listening address and connection limits need a restart; the log says so.
        """
        old_pools = self.pipeline.models
        self.pipeline.models = build_pools(config, str(self.workspace.config_path))
        self.pipeline.chat_model = config.chat_model()
        self.pipeline.chat.context_tokens = config.gateway.context_tokens
        self.pipeline.chat.tools = build_model_tools(self.workspace, config)
        self.pipeline.sessions.timeout = config.gateway.session_timeout
        self.pipeline.sessions.history_chars = history_chars(config)
        self.authenticator.set_static_tokens(config.auth.tokens)
        self.reloader.loader.hosts.config = config.model_dump(by_alias=True)
        self.reloader.loader.default_timeout = config.skills.timeout
        if (config.gateway.host, config.gateway.port, config.gateway.max_connections) != (
                self.config.gateway.host, self.config.gateway.port,
                self.config.gateway.max_connections):
            log.warning("gateway.host/port/max_connections changed: restart to apply them")
        self.config = config
        # Replies in flight may still stream through the old clients: close them at stop.
        self.retired_pools.extend(old_pools.values())

    def stop(self, timeout: float) -> list[str]:
        """Finish in-flight replies (up to `timeout`), then stop every part.

        Returns every failure instead of stopping at the first, so one broken channel does not
        keep the others (or the database) open.
        """
        problems: list[str] = []
        if not self.pipeline.drain(timeout):
            problems.append(f"messages still in flight after {timeout:.0f}s were abandoned")
        self.reloader.stop()
        for channel in self.channels:
            try:
                channel.stop()
            except Exception as e:  # collect, keep stopping the rest
                log.exception("channel %s failed to stop", channel.name)
                problems.append(f"channel {channel.name}: {e}")
        for pool in [*self.retired_pools, *self.pipeline.models.values()]:
            pool.close()
        self.store.close()
        return problems


def history_chars(config: Config) -> int:
    """How much of a conversation to keep in memory: more than the context budget can send
    (a token is rarely over 4 characters; 8 leaves room), and never under 32,000."""
    return max(32_000, config.gateway.context_tokens * 8)


def build_model_tools(workspace: Workspace, config: Config) -> dict[str, Tool]:
    """The tools the model itself may call: only those `tools.offer_to_model` names."""
    tools = build_tools(workspace.root, **config.tools.model_dump(exclude={"offer_to_model"}))
    return {name: tools[name] for name in config.tools.offer_to_model}


def build_gateway(workspace: Workspace, config: Config) -> Gateway:
    store = Store(workspace.db_url)
    authenticator = TokenAuthenticator(store, config.auth.tokens)
    knowledge = KnowledgeBase(workspace.knowledge,
                              max_tokens=min(500, config.gateway.context_tokens // 4))
    sessions = SessionManager(store, config.gateway.session_timeout,
                              history_chars=history_chars(config))
    pipeline = Pipeline(
        store=store,
        sessions=sessions,
        guards=GuardChain([RequirePrincipal()]),
        models=build_pools(config, str(workspace.config_path)),
        chat_model=config.chat_model(),
        chat=ChatResponder(sessions, knowledge, config.gateway.context_tokens,
                           build_model_tools(workspace, config)),
    )

    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.gateway.max_body_bytes
    app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": WS_PING_INTERVAL,
                                         "max_message_size": config.gateway.max_body_bytes}
    register_error_handlers(app, config.gateway.max_body_bytes)
    login_codes, redeem_code = build_login_codes(authenticator, LoginCodes(), store,
                                                 config.auth.token_expire)
    app.register_blueprint(login_codes)
    app.register_blueprint(build_pages(authenticator, Path(webui.__file__).parent,
                                       int(config.auth.token_expire), redeem_code))

    http = HttpChannel(pipeline.handle, authenticator)
    app.register_blueprint(http.blueprint)
    websocket = WebSocketChannel(pipeline.handle, authenticator, Sock(app))
    hosts = SkillHostPool(workspace.root, config.skills.host_processes,
                          config.model_dump(by_alias=True))
    loader = SkillLoader(workspace.root, hosts, config.skills.timeout)
    reloader = Reloader(workspace, config, loader, knowledge, on_skills=pipeline.use_skills)
    app.register_blueprint(build_admin(authenticator, reloader, store))
    return Gateway(app, config, workspace, store, pipeline, reloader, authenticator,
                   [http, websocket])
