"""Settings: one immutable snapshot of everything config.yaml decides, swapped by reference.

A config reload builds a whole new `Settings` (model pools, the guard chain, model tools,
session policy, each channel's options) and the gateway swaps one reference, as it does for
skills. A message reads the snapshot once when it starts and keeps it, so it never sees half of
an old config and half of a new one. The pools of a replaced snapshot are retired: each closes
once its last call finishes.

What must outlive a snapshot (token cache, rate-limit counters) is `Process` state, built once
per gateway process and handed to every snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from limits.strategies import MovingWindowRateLimiter
from pydantic import BaseModel

from gateway.common.networks import Network, parse_networks
from gateway.common.workspace import Workspace
from gateway.config import Config
from gateway.core.inbox import INBOX
from gateway.core.sessions import SessionPolicy
from gateway.core.store import Store
from gateway.guards.address import AddressAllowlist
from gateway.guards.authenticate import Authenticate, Authenticator, CredentialSource
from gateway.guards.chain import GuardChain
from gateway.guards.jwt_tokens import JwtTokens
from gateway.guards.lockout import LockoutBook, LockoutPolicy
from gateway.guards.rate_limit import (
    RateLimit,
    SharedLimits,
    new_limiter,
)
from gateway.guards.stranger import StrangerPolicy
from gateway.guards.token_cache import LocalTokenCache, TokenCache
from gateway.guards.tokens import IssuedTokens, PlatformToken, StaticTokens
from gateway.models.pool import ModelPool
from gateway.models.registry import build_pools
from gateway.observe.metrics import Metrics
from gateway.tools import Tool, build_tools
from gateway.tools.command import Confinement
from gateway.tools.files import FileScope
from gateway.tools.options import HOSTED_KEYS
from gateway.tools.sandbox import find_sandbox

log = logging.getLogger(__name__)


@dataclass
class Process:
    """Per-process parts that every settings snapshot shares (see `gateway.core.state`)."""

    workspace: Workspace
    store: Store
    token_cache: TokenCache = field(default_factory=LocalTokenCache)
    limiters: dict[str, MovingWindowRateLimiter] = field(default_factory=dict)
    lockout: LockoutBook = field(default_factory=LockoutBook)
    metrics: Metrics = field(default_factory=Metrics)


    def limiter_for(self, storage: str) -> MovingWindowRateLimiter:
        """One limiter per storage URI, kept across reloads so counts survive them."""
        if storage not in self.limiters:
            self.limiters[storage] = new_limiter(storage)
        return self.limiters[storage]


@dataclass(frozen=True)
class Settings:
    config: Config
    models: Mapping[str, ModelPool]
    chat_model: str | None
    model_tools: Mapping[str, Tool]
    guards: GuardChain
    sessions: SessionPolicy
    channels: Mapping[str, BaseModel]  # each channel's validated options, by table name
    trusted_proxies: tuple[Network, ...] = ()  # whose X-Forwarded-For is believed

    @property
    def context_tokens(self) -> int:
        return self.config.gateway.context_tokens

    def retire(self) -> None:
        """This snapshot was replaced: close its model pools once they are idle."""
        for pool in self.models.values():
            pool.retire()


def build_settings(config: Config, process: Process, channels: Mapping[str, BaseModel],
                   platforms: frozenset[str] = frozenset()) -> Settings:
    """Everything config.yaml decides. `channels` are each channel's options, already checked
    by the channel (`gateway.channels.table.channel_options`); `platforms` names the chat
    platforms among them, whose senders pass the stranger policy one by one."""
    guards = build_guards(config, process, channels, platforms)
    return Settings(
        config=config,
        models=MappingProxyType(build_pools(config.models, str(process.workspace.config_path),
                                            process.metrics, config.gateway.context_tokens)),
        chat_model=config.chat_model(),
        model_tools=MappingProxyType(build_model_tools(process.workspace, config)),
        guards=guards,
        sessions=SessionPolicy(config.gateway.session_timeout, history_chars(config)),
        channels=MappingProxyType(channels),
        trusted_proxies=parse_networks(config.auth.trusted_proxies),
    )


def build_guards(config: Config, process: Process, channels: Mapping[str, BaseModel],
                 platforms: frozenset[str] = frozenset()) -> GuardChain:
    """The chain in its documented order (see gateway.guards)."""
    auth = config.auth
    sources: list[CredentialSource] = [StaticTokens(auth.tokens),
                                       IssuedTokens(process.store, process.token_cache)]
    if auth.jwt_secret:
        sources.append(JwtTokens(auth.jwt_secret))
    for name in platforms:
        token = getattr(channels[name], "bot_token", None)
        if token and getattr(channels[name], "enabled", False):
            sources.append(PlatformToken(name, token))
    security = config.security
    lockout = LockoutPolicy(auth.lockout.failures, auth.lockout.window, auth.lockout.duration,
                            parse_networks(auth.lockout.exempt))
    limiter = process.limiter_for(auth.rate_limit.storage)
    exempt = parse_networks(auth.rate_limit.exempt)
    return GuardChain([
        AddressAllowlist(parse_networks(config.console.allow_ips),
                         parse_networks(auth.allow_ips)),
        RateLimit(limiter, per_ip=auth.rate_limit.per_ip, exempt=exempt),
        Authenticate(Authenticator(sources), process.lockout, lockout),
        SharedLimits(limiter, global_limit=auth.rate_limit.global_, exempt=exempt,
                     per_sender=auth.rate_limit.per_sender, chat_channels=platforms),
        StrangerPolicy(process.store, mode=security.stranger_mode,
                       code_expire=security.code_expire,
                       max_attempts=security.max_code_attempts,
                       allowlist=frozenset(security.allowlist),
                       require_approval=security.require_approval, chat_channels=platforms),
    ])


def history_chars(config: Config) -> int:
    """How much of a conversation to keep in memory: more than the context budget can send
    (a token is rarely over 4 characters; 8 leaves room), and never under 32,000."""
    return max(32_000, config.gateway.context_tokens * 8)


def build_model_tools(workspace: Workspace, config: Config) -> dict[str, Tool]:
    """The tools the model itself may call: only those `tools.offer_to_model` names, and its
    files tool only inside `tools.model_read` / `model_write` (never skills/, data/ or
    config.yaml: the code and secrets that run it). Its command tool runs every program in
    the OS sandbox showing only those folders; where there is none, the model gets no
    command tool at all (never a weaker one), and the log says why."""
    limits = config.tools
    # what people sent (files/inbox) is theirs: the model reads it, never rewrites it
    scope = FileScope(tuple(limits.model_read), tuple(limits.model_write), keep=(str(INBOX),))
    for folder in scope.write:  # the model's scratch folder, so its first write has a place
        (workspace.root / folder).mkdir(parents=True, exist_ok=True)
    confinement = None
    if "command" in limits.offer_to_model:
        status = find_sandbox()
        if status.sandbox is None:
            log.warning("%s; the model is not offered the command tool (to fix: %s)",
                        status.describe(), status.fix)
        else:
            confinement = Confinement(status.sandbox, scope.read, scope.write, scope.keep)
    tools = build_tools(workspace.root, files_scope=scope, confinement=confinement,
                        **limits.model_dump(exclude={"offer_to_model", "model_read",
                                                     "model_write", *HOSTED_KEYS}))
    return {name: tools[name] for name in limits.offer_to_model  # the browser: hosted.py
            if name in tools and (name != "command" or confinement is not None)}
