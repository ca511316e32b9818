"""What every config.yaml section is made of: the section base that refuses unknown keys,
durations as the guide writes them (`30m`, `8h`), address lists, which keys hold secrets, and
validation errors as sentences that name the key and never show a secret.

Each part of the gateway declares its own section with these (`models/options.py`,
`guards/options.py`, ...); `gateway.config` assembles the whole file from them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError

from gateway.common.networks import parse_networks

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


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


class Section(BaseModel):
    """A config.yaml section: unknown keys are refused, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def _check_networks(value: list[str]) -> list[str]:
    parse_networks(value)
    return value


Networks = Annotated[list[str], AfterValidator(_check_networks)]
LOOPBACK = ["127.0.0.0/8", "::1/128"]


# A key holds a secret when it is one of these words or ends with `_<word>` (`jwt_secret`,
# `bot_token`, `api_key`, `auth.tokens`); `max_tokens` and `context_tokens` are counts.
# Everything under `headers` and `env` (an MCP server's Authorization, `skills.env`) is too.
_SECRET_KEYS = re.compile(r"^(?:.*_)?(?:secret|token|password|key|passphrase)$|^tokens$"
                          r"|^headers$|^env$", re.IGNORECASE)


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


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
