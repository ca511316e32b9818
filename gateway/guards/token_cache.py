"""Issued tokens recently found in the store (by hash, with expiry), so a message does not read
the store to authenticate. Per process, like the rest of `gateway.core.state`: a token revoked
through another process stays usable here until its entry's `cached_until`, which the
authenticator keeps short.
"""

from __future__ import annotations

from typing import Protocol


class TokenCache(Protocol):
    def get(self, digest: str) -> tuple[str, float, float] | None:
        """(label, expires_at, cached_until) for a token hash, if cached."""
        ...

    def put(self, digest: str, entry: tuple[str, float, float]) -> None: ...

    def forget(self, digest: str) -> None:
        """Drop one entry: a token revoked here ends at once."""
        ...


class LocalTokenCache:
    """Per-process `TokenCache`, bounded (cleared whole when full: entries are cheap to reload).

    A token revoked through another process stays usable here until its entry's
    `cached_until`, which the authenticator keeps short.
    """

    def __init__(self, size: int = 1024) -> None:
        self._entries: dict[str, tuple[str, float, float]] = {}
        self.size = size

    def get(self, digest: str) -> tuple[str, float, float] | None:
        return self._entries.get(digest)

    def put(self, digest: str, entry: tuple[str, float, float]) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[digest] = entry

    def forget(self, digest: str) -> None:
        self._entries.pop(digest, None)
