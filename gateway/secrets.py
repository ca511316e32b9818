"""Secrets from the OS keyring, for `${keyring:name}` values in config.yaml.

Kept apart from config parsing so tests and machines without a keyring backend still load a
config that does not ask for one.
"""

from __future__ import annotations

SERVICE = "moltbot"


def lookup_secret(name: str) -> str | None:
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        return None
    try:
        return keyring.get_password(SERVICE, name)
    except (KeyringError, RuntimeError):
        return None
