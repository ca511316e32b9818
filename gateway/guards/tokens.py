"""Bearer tokens: issued by `moltbot dashboard --token-gen`, stored only as SHA-256 hashes.

A stolen database therefore yields no usable token; expiry is checked on every use.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from gateway.guards.token_cache import LocalTokenCache, TokenCache


class TokenBook(Protocol):
    """Where issued tokens are kept, as hashes (the store)."""

    def add_token(self, token_hash: str, label: str, expires_at: float) -> None: ...

    def expire_tokens(self, hashes: list[str], at: float) -> None: ...

    def token_row(self, token_hash: str, now: float) -> tuple[str, float] | None: ...


TOKEN_PREFIX = "mb_"
MAX_CREDENTIAL = 4096  # longer is refused before hashing: a JWT fits, a flood does not


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def credential_id(credential: str) -> str:
    """A public handle for a credential: its hash's start, the id `moltbot token list` shows
    for an issued token (`TokenRow.id`). Tells apart tokens of one name; reveals nothing."""
    return hash_token(credential)[:10]


def issue_token(store: TokenBook, expire_s: float, label: str = "dashboard") -> tuple[str, float]:
    """A new random token valid for `expire_s` seconds; only its hash is kept."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = time.time() + expire_s
    store.add_token(hash_token(token), label, expires_at)
    return token, expires_at


def revoke_token(store: TokenBook, cache: TokenCache, token: str) -> bool:
    """End an issued token now, in this process at once (its cache entry goes too); True if
    it was one. A static `auth.tokens` entry cannot be ended here: it lives in config.yaml."""
    digest = hash_token(token)
    found = store.token_row(digest, time.time()) is not None
    if found:
        store.expire_tokens([digest], time.time())
    cache.forget(digest)
    return found


class StaticTokens:
    """`auth.tokens` from config.yaml, for scripts and devices; principal `token:config`."""

    name = "static"

    def __init__(self, tokens: list[str]) -> None:
        self._hashes = [hash_token(t) for t in tokens if t]

    def identify(self, credential: str, channel: str) -> str | None:
        digest = hash_token(credential)
        # compare with every entry, so the time taken does not tell which one was close
        found = [hmac.compare_digest(known, digest) for known in self._hashes]
        return "token:config" if any(found) else None


class IssuedTokens:
    """Tokens in the store (dashboard, tray, cli), principal `token:<label>`.

    A token found in the store is remembered in a per-process `TokenCache` for
    `CACHE_SECONDS`, so a busy client costs at most one database read a second; expiry is
    still exact, and a token revoked from the CLI stops working within that second.
    """

    name = "issued"
    CACHE_SECONDS = 1.0

    def __init__(self, store: TokenBook, cache: TokenCache | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.cache = cache or LocalTokenCache()
        self.clock = clock

    def identify(self, credential: str, channel: str) -> str | None:
        digest = hash_token(credential)
        now = self.clock()
        cached = self.cache.get(digest)
        if cached and now < cached[1] and now < cached[2]:
            return f"token:{cached[0]}"
        found = self.store.token_row(digest, now)
        if not found:
            return None
        label, expires_at = found
        self.cache.put(digest, (label, expires_at, now + self.CACHE_SECONDS))
        return f"token:{label}"


class PlatformToken:
    """A chat platform's bot token (`channels.<name>.bot_token`): it proves the platform,
    principal `platform:<name>`, and only on that channel's own entry."""

    name = "platform"

    def __init__(self, channel: str, token: str) -> None:
        self.channel = channel
        self._hash = hash_token(token)

    def identify(self, credential: str, channel: str) -> str | None:
        if channel == self.channel and hmac.compare_digest(hash_token(credential), self._hash):
            return f"platform:{channel}"
        return None
