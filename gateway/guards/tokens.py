"""Bearer tokens: issued by `moltbot dashboard --token-gen`, stored only as SHA-256 hashes.

A stolen database therefore yields no usable token; expiry is checked on every use.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from gateway.store import Store

TOKEN_PREFIX = "mb_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(store: Store, expire_s: float, label: str = "dashboard") -> tuple[str, float]:
    """A new random token valid for `expire_s` seconds; only its hash is kept."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = time.time() + expire_s
    store.add_token(hash_token(token), label, expires_at)
    return token, expires_at


class TokenAuthenticator:
    """Answers "who is this?" for a presented token, or None when it is unknown or expired.

    A token found in the store is remembered (by hash, with its expiry) for `CACHE_SECONDS`,
    so a busy client does not cost a database read per message; expiry is still exact.
    """

    CACHE_SECONDS = 60.0
    CACHE_SIZE = 1024

    def __init__(self, store: Store, static_tokens: list[str]) -> None:
        self.store = store
        self.static_hashes: list[str] = []
        self.set_static_tokens(static_tokens)
        self._known: dict[str, tuple[str, float, float]] = {}  # hash -> label, expiry, until

    def set_static_tokens(self, tokens: list[str]) -> None:
        """`auth.tokens` from config.yaml; replaced whole when the config is reloaded."""
        self.static_hashes = [hash_token(t) for t in tokens if t]

    def verify(self, token: str | None) -> str | None:
        if not token or len(token) > 512:
            return None
        digest = hash_token(token)
        for known in self.static_hashes:
            if hmac.compare_digest(known, digest):
                return "token:config"
        now = time.time()
        cached = self._known.get(digest)
        if cached and now < cached[1] and now < cached[2]:
            return f"token:{cached[0]}"
        found = self.store.token_row(digest, now)
        if not found:
            return None
        label, expires_at = found
        if len(self._known) >= self.CACHE_SIZE:
            self._known.clear()
        self._known[digest] = (label, expires_at, now + self.CACHE_SECONDS)
        return f"token:{label}"
