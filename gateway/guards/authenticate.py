"""Authentication: one `Authenticator` asks its credential sources in turn who a caller is.

Sources are small objects with `name` and `identify(credential) -> principal | None`: static
`auth.tokens`, tokens issued into the store, JWTs signed with `auth.jwt_secret`. A new kind of
credential is one more source; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.guards.chain import NOT_SIGNED_IN, Allow, Caller, Refuse, Verdict
from gateway.guards.tokens import MAX_CREDENTIAL


class CredentialSource(Protocol):
    name: str

    def identify(self, credential: str) -> str | None: ...


class Authenticator:
    def __init__(self, sources: Sequence[CredentialSource]) -> None:
        self.sources = tuple(sources)

    def identify(self, credential: str | None) -> str | None:
        """The principal a credential proves, or None (unknown, expired, forged, too long)."""
        if not credential or len(credential) > MAX_CREDENTIAL:
            return None
        for source in self.sources:
            principal = source.identify(credential)
            if principal:
                return principal
        return None


class Authenticate:
    """The chain's authentication guard: no credential or a bad one is `unauthorized`."""

    name = "authentication"

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def check(self, caller: Caller, principal: str) -> Verdict:
        if caller.credential is None:
            return NOT_SIGNED_IN
        found = self.authenticator.identify(caller.credential)
        if found:
            return Allow(found)
        return Refuse("unauthorized", "That token is unknown or expired; create one with "
                      "`moltbot dashboard --token-gen --expire 8h`.")
