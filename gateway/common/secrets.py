"""Secrets in the OS keyring (service "moltbot"), for `${keyring:NAME}` values in config.yaml.

Kept apart from config parsing so tests and machines without a keyring backend still load a
config that does not ask for one. Storing refuses any backend that is not a secure store
(keyring's `fail` backend, an empty chain, a plaintext file): a secret written to a file in
clear is worse than none, and `${ENV_VAR}` is the honest alternative on such a machine.
"""

from __future__ import annotations

import re
from typing import Any

SERVICE = "moltbot"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_INSECURE = ("fail.Keyring", "null.Keyring", "Plaintext")
ENV_HINT = ("put the value in an environment variable instead and write it as ${VAR} in "
            "config.yaml (e.g. `export MOLTBOT_JWT=...` and `jwt_secret: ${MOLTBOT_JWT}`)")


class SecretStoreError(Exception):
    """A secret could not be stored, read or deleted; the message says why and what to do."""


class NoSecureKeyring(SecretStoreError):
    """This machine has no secure keyring backend, so nothing is stored at all."""


def lookup_secret(name: str) -> str | None:
    """The secret, or None when it is missing or no keyring can be asked (config says so)."""
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        return None
    try:
        return keyring.get_password(SERVICE, name)
    except (KeyringError, RuntimeError):
        return None


def secure_backend() -> Any:
    """The keyring backend `set_password` would use, if it is a secure store; else raise."""
    import keyring
    from keyring.backends import chainer

    backend = keyring.get_keyring()
    chained = list(backend.backends) if isinstance(backend, chainer.ChainerBackend) else [backend]
    used = chained[0] if chained else None
    if used is None or any(mark in _backend_name(used) for mark in _INSECURE):
        found = _backend_name(used) if used is not None else "an empty chain"
        raise NoSecureKeyring(
            f"no secure keyring on this machine (keyring found {found}); Moltbot never "
            f"stores secrets in a plain file: {ENV_HINT}. A desktop session's Secret Service "
            f"(GNOME Keyring, KWallet) or macOS/Windows' own store provides one.")
    return backend


def keyring_status() -> str | None:
    """None when secrets can be stored; else the sentence `moltbot doctor` shows."""
    try:
        secure_backend()
    except NoSecureKeyring as e:
        return str(e)
    return None


def store_secret(name: str, value: str) -> str:
    """Store `value` under `name`; returns the backend's name for the confirmation."""
    from keyring.errors import KeyringError

    _check_name(name)
    if not value:
        raise SecretStoreError(f"the value for {name} is empty; nothing was stored")
    backend = secure_backend()
    try:
        backend.set_password(SERVICE, name, value)
    except (KeyringError, RuntimeError) as e:
        raise SecretStoreError(f"the keyring ({_backend_name(backend)}) refused to store "
                               f"{name}: {e}; unlock it, or {ENV_HINT}") from e
    return _backend_name(backend)


def delete_secret(name: str) -> None:
    """Remove `name`; a missing secret is an error, so a typo in the name does not pass."""
    from keyring.errors import KeyringError, PasswordDeleteError

    _check_name(name)
    backend = secure_backend()
    try:
        backend.delete_password(SERVICE, name)
    except PasswordDeleteError as e:
        raise SecretStoreError(f"no secret {name} in the keyring (service {SERVICE})") from e
    except (KeyringError, RuntimeError) as e:
        raise SecretStoreError(f"the keyring ({_backend_name(backend)}) refused to delete "
                               f"{name}: {e}") from e


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise SecretStoreError(f"secret names are letters, digits, '_', '.' and '-' "
                               f"(used as ${{keyring:NAME}} in config.yaml), got {name!r}")


def _backend_name(backend: Any) -> str:
    from keyring.backends import chainer

    if isinstance(backend, chainer.ChainerBackend) and backend.backends:
        backend = backend.backends[0]  # a chain stores in its first backend: name that one
    cls = type(backend)
    return f"{cls.__module__.removeprefix('keyring.backends.')}.{cls.__name__}"
