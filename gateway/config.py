"""config.yaml: the guide's keys as pydantic models, `${ENV}` expansion, and clear errors.

A partial file is valid: every key has a default, so the guide's own three-line `models:` snippet
is a working config. Unknown keys and wrong types are refused with the key's path and what was
expected, because a silently ignored typo is worse than a refusal.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from gateway.assistant_options import MemoryConfig, SchedulesConfig
from gateway.common.options import (
    ConfigError,
    Duration,
    Section,
    describe_errors,
    is_loopback,
)
from gateway.common.yaml_reader import read_yaml, yaml_problem
from gateway.guards.options import AuthConfig, ConsoleConfig, SecurityConfig
from gateway.guards.rate_limit import parse_rate
from gateway.knowledge.options import KnowledgeConfig
from gateway.mcp.options import McpServers
from gateway.models.options import ModelConfig
from gateway.observe.alerting.config import AlertsConfig
from gateway.skills.options import SkillsConfig
from gateway.tools.options import ToolsConfig

_ENV_REF = re.compile(r"\$\{([^}]+)\}")


class GatewayConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(18789, ge=1, le=65535)
    worker_processes: int = Field(1, ge=1)
    max_connections: int = Field(1000, ge=1)
    keepalive_timeout: Duration = 65.0
    request_timeout: Duration = Field(10.0, gt=0, description="a request's head and body: "
                                      "the first from the accept, later ones from their "
                                      "first byte")
    max_connections_per_ip: int = Field(64, ge=1, description="each address counted, "
                                        "loopback ones too; auth.trusted_proxies are not")
    session_timeout: Duration = 1800.0
    context_tokens: int = Field(2048, ge=64, description="what goes with each message (tool "
                                "declarations, documents, passages, history), cut to what "
                                "each model takes (gateway.core.fit)")
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    max_file_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="the largest file a "
                                "message may carry (HTTP multipart, WebSocket base64)")
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="all the files of "
                                  "one message together")
    shutdown_timeout: Duration = 10.0
    default_model: str | None = None
    timezone: str = Field(default_factory=lambda: machine_zone(), description="the IANA zone "
                          "reminders and schedules are read in (default: the machine's)")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="names the gateway answers to (Host header) "
        "besides IP addresses, localhost and gateway.host, e.g. the name nginx serves")

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name or any(c in name for c in "/:@ ") or name != name.strip():
                raise ValueError(f"{name!r}: write a host name only, such as "
                                 "'moltbot.example.com' (no scheme, port or path)")
        return [n.lower().rstrip(".") for n in names]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}: use an IANA name such as "
                             "'Europe/Berlin', 'Asia/Shanghai' or 'UTC'") from None
        return name

    @model_validator(mode="after")
    def _upload_holds_a_file(self) -> GatewayConfig:
        if self.max_upload_bytes < self.max_file_bytes:
            raise ValueError(f"max_upload_bytes ({self.max_upload_bytes}) is smaller than "
                             f"max_file_bytes ({self.max_file_bytes}): one message could not "
                             "carry one file of the largest size; raise max_upload_bytes")
        return self

    @field_validator("worker_processes")
    @classmethod
    def _one_process(cls, value: int) -> int:
        if value > 1:
            raise ValueError("several worker processes are not supported yet: one process "
                             "serves (about 300 msg/s); set 1 or remove the key")
        return value


def machine_zone() -> str:
    """The machine's IANA zone (tzlocal), UTC when it has none that zoneinfo knows."""
    import tzlocal

    try:
        name = tzlocal.get_localzone_name()
        ZoneInfo(name or "")
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return "UTC"
    return name or "UTC"


class LogsConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    backup_count: int = Field(5, ge=0)


class OutboxConfig(Section):
    """`outbox:`: what the gateway sends on push channels (`gateway.core.outbox`)."""

    max_attempts: int = Field(10, ge=1, le=100, description="deliveries tried before a "
                              "message is marked failed (backoff 1 s doubling to 5 min)")
    per_chat: str = Field("30/min", description="messages skills and POST /api/v1/send may "
                          "start for one chat (replies are not counted)")

    @field_validator("per_chat")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)
        return value


class Config(Section):
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    # each channel checks its own options (gateway.channels.table.channel_options), so that
    # reading config.yaml, which the CLI does often, never imports a channel's libraries
    channels: dict[str, dict[str, Any]] = Field(default_factory=dict)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    skills: SkillsConfig = Field(default_factory=SkillsConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    schedules: SchedulesConfig = Field(default_factory=SchedulesConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    knowledge: KnowledgeConfig = Field(default_factory=KnowledgeConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    mcp_servers: McpServers = Field(default_factory=dict)  # MCP tool servers (gateway.mcp)
    # each value that `${ENV}`/`${keyring:...}` filled in -> the text as written, so that a
    # later check (channel options) can name the reference instead of echoing the secret
    _expanded: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def expanded(self) -> dict[str, str]:
        return self._expanded

    @model_validator(mode="after")
    def _default_model_exists(self) -> Config:
        name = self.gateway.default_model
        if name and name not in self.models:
            raise ValueError(f"gateway.default_model {name!r} is not one of models: "
                             f"{sorted(self.models) or 'none defined'}")
        return self

    @model_validator(mode="after")
    def _embedding_model_exists(self) -> Config:
        name = self.knowledge.embedding_model
        if name and name not in self.models:
            raise ValueError(
                f"knowledge.embedding_model {name!r} is not one of models: "
                f"{sorted(self.models) or 'none defined'}; add it under models: (e.g. "
                f"{name}: {{endpoint: \"http://127.0.0.1:11434\", model: nomic-embed-text}}) "
                "or set knowledge.embedding_model to \"\" for BM25 only")
        return self

    def chat_model(self) -> str | None:
        """The model plain chat goes to: `gateway.default_model`, else the first listed that
        is not `knowledge.embedding_model` (an embedding model cannot chat)."""
        return self.gateway.default_model or next(
            (n for n in self.models if n != self.knowledge.embedding_model), None)


def for_skills(config: Config) -> dict[str, Any]:
    """The config a skill host is given: what `context.tool`/`context.ask` need (the models,
    the tools' limits, which model chat uses) and nothing else: never auth's tokens and JWT
    key, the channels' bot tokens or the alert senders' passwords."""
    return {"models": {name: model.model_dump() for name, model in config.models.items()},
            "tools": config.tools.model_dump(), "chat_model": config.chat_model(),
            "context_tokens": config.gateway.context_tokens}


def expand_env(value: Any, path: str = "", problems: list[str] | None = None,
               secret_lookup: Any = None, expanded: dict[str, str] | None = None) -> Any:
    """Replace `${VAR}` (environment) and `${keyring:name}` (OS keyring) in every string.

    A missing variable is a problem at its key path, not an empty string: an empty bot token
    would fail much later with a far less helpful message. `expanded` collects each filled-in
    string with the text as written: errors show that text, never the secret it became.
    """
    problems = [] if problems is None else problems
    if isinstance(value, dict):
        return {k: expand_env(v, f"{path}.{k}" if path else str(k), problems, secret_lookup,
                              expanded) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{path}[{i}]", problems, secret_lookup, expanded)
                for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def resolve(match: re.Match[str]) -> str:
        ref = match.group(1)
        if ref.startswith("keyring:"):
            found = secret_lookup(ref[len("keyring:"):]) if secret_lookup else None
            if found is None:
                problems.append(f"{path}: no secret {ref[8:]!r} in the OS keyring; "
                                f"store it with `moltbot secret set {ref[8:]}`")
                return ""
            return str(found)
        if ref not in os.environ:
            problems.append(f"{path}: environment variable {ref} is not set; "
                            f"export it or write the value in config.yaml")
            return ""
        return os.environ[ref]

    result = _ENV_REF.sub(resolve, value)
    if expanded is not None and result != value:
        expanded[result] = value
    return result


def parse_config(data: Any, source: Path | str = "config.yaml",
                 secret_lookup: Any = None) -> Config:
    """Validate already-parsed YAML; raises ConfigError listing every problem at once."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["the file must be a mapping of sections "
                                   "(models:, gateway:, ...)"])
    problems: list[str] = []
    filled: dict[str, str] = {}
    expanded = expand_env(data, problems=problems, secret_lookup=secret_lookup,
                          expanded=filled)
    try:
        config = Config.model_validate(expanded)
    except ValidationError as e:
        problems.extend(describe_errors(e, expanded=filled))
        raise ConfigError(source, problems) from e
    if problems:
        raise ConfigError(source, problems)
    config._expanded = filled
    return config


def load_config(path: Path, secret_lookup: Any = None) -> Config:
    """Read and validate config.yaml; a missing file means all defaults."""
    if not path.exists():
        return Config()
    try:
        data = read_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(path, [yaml_problem(e)]) from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, [f"cannot read the file: {e}"]) from e
    return parse_config(data, path, secret_lookup)


MIN_REMOTE_TOKEN = 32  # characters of a static token before the gateway leaves loopback


def bind_problem(host: str, config: Config) -> str | None:
    """Why the gateway must not listen on `host`, or None: off loopback needs auth set up."""
    if is_loopback(host):
        return None
    short = [t for t in config.auth.tokens if len(t) < MIN_REMOTE_TOKEN]
    if short:
        return (f"Refusing to listen on {host} with a short token in auth.tokens: off loopback "
                f"each needs at least {MIN_REMOTE_TOKEN} characters (make one with `python3 -c "
                f"\"import secrets; print(secrets.token_urlsafe(32))\"`).")
    if config.auth.is_configured():
        return None
    return (f"Refusing to listen on {host}: anyone who can reach it could use your assistant. "
            f"Set auth.jwt_secret or auth.tokens in config.yaml first, or keep the default "
            f"host 127.0.0.1 (and put nginx with TLS in front for remote use).")
