"""config.yaml: the guide's keys as pydantic models, `${ENV}` expansion, and clear errors.

A partial file is valid: every key has a default, so the guide's own three-line `models:` snippet
is a working config. Unknown keys and wrong types are refused with the key's path and what was
expected, because a silently ignored typo is worse than a refusal.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.common.yaml_reader import read_yaml, yaml_problem
from gateway.observe.alerting.config import AlertsConfig

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_ENV_REF = re.compile(r"\$\{([^}]+)\}")


class ConfigError(Exception):
    """config.yaml cannot be used; `problems` lists each one as 'key.path: what to fix'."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{path} is not valid:\n" + "\n".join(f"  - {p}" for p in problems))


def parse_duration(value: Any) -> float:
    """Seconds from `65`, `"30m"`, `"24h"`, `"8h"` or `"500ms"`: the guide writes both forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, '30s', '30m' or '8h'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration such as 30, '30s', '30m' or '8h', got {value!r}")


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ModelConfig(_Section):
    """One model as the guide writes it (`endpoint`, `api_key`, `max_tokens`), plus fail-over.

    `provider` is inferred when absent: an endpoint whose path ends in `/v1` speaks the OpenAI
    API, anything else is Ollama (the guide's snippet points at Ollama's port 11434).
    """

    endpoint: str | None = None
    endpoints: list[str] = Field(default_factory=list)
    api_key: str | None = None
    max_tokens: int = Field(512, gt=0)
    provider: Literal["ollama", "openai"] | None = None
    model: str | None = Field(None, description="name the backend knows; default: the key")
    temperature: float | None = Field(None, ge=0, le=2)
    timeout: Duration = 120.0

    @model_validator(mode="after")
    def _has_endpoint(self) -> ModelConfig:
        if not self.endpoint and not self.endpoints:
            raise ValueError("give an endpoint, e.g. endpoint: \"http://127.0.0.1:11434\"")
        return self

    def all_endpoints(self) -> list[str]:
        """`endpoint` first, then `endpoints`, without repeats."""
        urls = ([self.endpoint] if self.endpoint else []) + self.endpoints
        return list(dict.fromkeys(u.rstrip("/") for u in urls))

    def provider_for(self, url: str) -> str:
        if self.provider:
            return self.provider
        return "openai" if url.rstrip("/").endswith("/v1") else "ollama"


class GatewayConfig(_Section):
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
    context_tokens: int = Field(2048, ge=64, description="history budget sent to the model")
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    shutdown_timeout: Duration = 10.0
    default_model: str | None = None
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

    @field_validator("worker_processes")
    @classmethod
    def _one_process(cls, value: int) -> int:
        if value > 1:
            raise ValueError("several worker processes are not supported yet: one process "
                             "serves (about 300 msg/s); set 1 or remove the key")
        return value


def _check_networks(value: list[str]) -> list[str]:
    from gateway.guards.rate_limit import parse_networks

    parse_networks(value)
    return value


Networks = Annotated[list[str], AfterValidator(_check_networks)]
LOOPBACK = ["127.0.0.0/8", "::1/128"]


class RateLimitConfig(_Section):
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
        from gateway.guards.rate_limit import parse_rate

        parse_rate(value)
        return value


class LockoutConfig(_Section):
    """`failures` bad credentials from one address within `window` lock it out for
    `duration`; loopback is not exempt unless listed in `exempt`."""

    failures: int = Field(10, ge=1)
    window: Duration = 60.0
    duration: Duration = 300.0
    exempt: Networks = Field(default_factory=list)


class ConsoleConfig(_Section):
    allow_ips: Networks = Field(default_factory=lambda: list(LOOPBACK),
                                description="who may open the console and its APIs")


class AuthConfig(_Section):
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


class SecurityConfig(_Section):
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


class LogsConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    backup_count: int = Field(5, ge=0)


class ToolsConfig(_Section):
    """What skills and the model may do beyond talking: every list is closed when empty."""

    allowed_commands: list[str] = Field(default_factory=list)
    command_timeout: Duration = 30.0
    allowed_hosts: list[str] = Field(default_factory=list)
    http_timeout: Duration = 10.0
    max_bytes: int = Field(1024 * 1024, ge=1024)
    offer_to_model: list[Literal["files", "command", "http"]] = Field(
        default_factory=list, description="tools the model may call itself (skills always may)")
    model_read: list[str] = Field(default_factory=lambda: ["knowledge", "files"],
                                  description="workspace folders the model's files tool reads")
    model_write: list[str] = Field(default_factory=lambda: ["files"],
                                   description="workspace folders the model's files tool writes")

    @field_validator("model_read", "model_write")
    @classmethod
    def _not_what_runs_the_model(cls, folders: list[str]) -> list[str]:
        """The model is not trusted: it may never touch the code and secrets that run it."""
        for folder in folders:
            parts = Path(folder).parts
            if not parts or Path(folder).is_absolute() or ".." in parts or parts[0] == ".":
                raise ValueError(f"{folder!r}: name a folder inside the workspace, such as "
                                 "'knowledge' or 'files'")
            if parts[0] in ("skills", "data", "config.yaml") or parts[0].startswith("."):
                raise ValueError(f"{folder!r}: the model may never read or write skills/, "
                                 "data/, config.yaml or hidden files: they are the code and "
                                 "the secrets that run it")
        return folders


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SkillsConfig(_Section):
    timeout: Duration = 30.0
    host_processes: int = Field(2, ge=1, le=16)
    env: dict[str, str] = Field(
        default_factory=dict, description="environment variables skills get, e.g. "
        "{WEATHER_KEY: \"${WEATHER_KEY}\"}; nothing else of the gateway's reaches them")

    @field_validator("env")
    @classmethod
    def _variable_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a variable name: letters, digits and _, "
                                 "not starting with a digit")
        return env


class Config(_Section):
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per channel of gateway.channels.table: its options")
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    skills: SkillsConfig = Field(default_factory=SkillsConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    # each value that `${ENV}`/`${keyring:...}` filled in -> the text as written, so that a
    # later check (channel options) can name the reference instead of echoing the secret
    _expanded: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def expanded(self) -> dict[str, str]:
        return self._expanded

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from gateway.channels.table import CHANNELS

        for name in value:
            if name not in CHANNELS:
                raise ValueError(f"channel {name!r} is not supported yet; this version has "
                                 f"{', '.join(CHANNELS)}")
        return value

    @model_validator(mode="after")
    def _default_model_exists(self) -> Config:
        name = self.gateway.default_model
        if name and name not in self.models:
            raise ValueError(f"gateway.default_model {name!r} is not one of models: "
                             f"{sorted(self.models) or 'none defined'}")
        return self

    def chat_model(self) -> str | None:
        """The model plain chat goes to: `gateway.default_model`, else the first listed."""
        return self.gateway.default_model or next(iter(self.models), None)


def for_skills(config: Config) -> dict[str, Any]:
    """The config a skill host is given: everything `context.tool`/`context.ask` need, never
    the alert senders' passwords and signing secrets, which no skill has a use for."""
    return config.model_dump(by_alias=True, exclude={"alerts"})


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


# A key holds a secret when it is one of these words or ends with `_<word>` (`jwt_secret`,
# `bot_token`, `api_key`, `auth.tokens`); `max_tokens` and `context_tokens` are counts.
_SECRET_KEYS = re.compile(r"^(?:.*_)?(?:secret|token|password|key|passphrase)$|^tokens$",
                          re.IGNORECASE)


def is_secret_key(name: str) -> bool:
    """Whether a config key's value must never be shown (errors, audit diffs)."""
    return bool(_SECRET_KEYS.match(name))


def _describe(error: dict[str, Any], expanded: dict[str, str]) -> str:
    """One problem as 'key.path: what to fix, got <value>'; a secret's value is never shown,
    and a value filled in from `${ENV}` or the keyring is shown as written (`${NAME}`)."""
    loc = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{loc}: unknown key; remove it or check its spelling"
    message = _as_written(str(error["msg"]).removeprefix("Value error, "), expanded)
    got = error.get("input")
    secret = any(is_secret_key(str(p)) for p in error["loc"])
    if secret and got is not None:
        return f"{loc}: {message} (value not shown: it is a secret)"
    plain = isinstance(got, dict | list) or got is None or "got " in message
    if isinstance(got, str) and got in expanded:
        got = expanded[got]
    return f"{loc}: {message}" + ("" if plain else f", got {got!r}")


MIN_ECHOED = 8  # shorter filled-in values are replaced only where quoted, as validators write


def _as_written(message: str, expanded: dict[str, str]) -> str:
    """`message` with every filled-in value put back as written: validators quote the value
    they refuse (`got 'enterprise:s3cret'`), and that may be a secret from the environment."""
    for value, written in expanded.items():
        if not value:
            continue
        message = message.replace(repr(value), repr(written))
        if len(value) >= MIN_ECHOED:
            message = message.replace(value, written)
    return message


def describe_errors(error: ValidationError, prefix: tuple[str, ...] = (),
                    expanded: dict[str, str] | None = None) -> list[str]:
    """Each problem of a validation error, its key path starting with `prefix`; `expanded`
    (see `expand_env`) keeps secrets from the environment out of the sentences."""
    return [_describe({**e, "loc": (*prefix, *e["loc"])}, expanded or {})
            for e in error.errors()]


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


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


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
