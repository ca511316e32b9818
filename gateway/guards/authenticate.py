"""Authentication: one `Authenticator` asks its credential sources in turn who a caller is.

Sources are small objects with `name` and `identify(credential) -> principal | None`: static
`auth.tokens`, tokens issued into the store, JWTs signed with `auth.jwt_secret`. A new kind of
credential is one more source; nothing else changes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Protocol

from gateway.guards.chain import NOT_SIGNED_IN, Allow, Caller, Refuse, Verdict
from gateway.guards.lockout import LockoutBook, LockoutPolicy
from gateway.guards.tokens import MAX_CREDENTIAL, credential_id
from gateway.observe.audit import audit

log = logging.getLogger(__name__)


class CredentialSource(Protocol):
    name: str

    def identify(self, credential: str, channel: str) -> str | None:
        """The principal this credential proves on this channel, or None."""
        ...


class Authenticator:
    def __init__(self, sources: Sequence[CredentialSource]) -> None:
        self.sources = tuple(sources)

    def identify(self, credential: str | None, channel: str = "") -> str | None:
        """The principal a credential proves, or None (unknown, expired, forged, too long)."""
        if not credential or len(credential) > MAX_CREDENTIAL:
            return None
        for source in self.sources:
            principal = source.identify(credential, channel)
            if principal:
                return principal
        return None


class Authenticate:
    """The chain's authentication guard: no credential or a bad one is `unauthorized`; an
    address locked out for bad credentials is `rate_limited`, even with a good one."""

    name = "authentication"

    def __init__(self, authenticator: Authenticator, lockout: LockoutBook,
                 policy: LockoutPolicy) -> None:
        self.authenticator = authenticator
        self.lockout = lockout
        self.policy = policy

    def check(self, caller: Caller, principal: str) -> Verdict:
        locked = self.lockout.locked_for(caller.peer, self.policy, caller.browser)
        if locked:
            return _locked_out(locked)
        if caller.credential is None:
            return NOT_SIGNED_IN
        found = self.authenticator.identify(caller.credential, caller.channel)
        if found:
            return Allow(found, credential=credential_id(caller.credential))
        if self.lockout.failed(caller.peer, self.policy, caller.browser):
            kind = "web pages at" if caller.browser else "programs at"
            log.warning("%s address %s locked out for %.0f s after %d bad credentials", kind,
                        caller.peer, self.policy.duration, self.policy.failures)
            audit("auth.locked_out", actor="", source=caller.peer, channel=caller.channel,
                  seconds=self.policy.duration, browser=caller.browser)
            return _locked_out(self.policy.duration)
        return Refuse("unauthorized", "That token is unknown or expired; create one with "
                      "`moltbot dashboard --token-gen --expire 8h`.")


def _locked_out(seconds: float) -> Refuse:
    return Refuse("rate_limited", f"Too many bad credentials from your address: locked out "
                  f"for {math.ceil(seconds)} s (auth.lockout).", math.ceil(seconds))
