"""Rate limits (the guide's `auth.rate_limit`): one budget per client address, spent before
authentication (`RateLimit`), and the shared ones, spent only by admitted callers
(`SharedLimits`: the global budget and each chat-platform sender's).

Moving windows from the `limits` package. Addresses in `exempt` (default: loopback, so the
owner's own scripts and benchmarks are never throttled) pass uncounted. The counters live in
`limits` storage created once per process (memory today; a Redis storage URI lets several
processes share them later), so a config reload changes the limits without resetting them.
"""

from __future__ import annotations

import re
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from gateway.common.networks import Network, in_networks
from gateway.guards.chain import Allow, Caller, Refuse, Verdict

_UNITS = {"s": "second", "sec": "second", "m": "minute", "min": "minute", "h": "hour",
          "hr": "hour", "d": "day"}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")


def parse_rate(text: str) -> RateLimitItem:
    """`1000/min` (the guide's form), `100/minute`, `5/10s`, `20/hour`; ValueError if not."""
    match = _RATE.match(text.lower())
    if match:
        count, multiple, unit = match.groups()
        unit = _UNITS.get(unit, unit.rstrip("s") if unit.endswith("s") else unit)
        try:
            return parse(f"{count}/{multiple}{unit}" if multiple else f"{count}/{unit}")
        except ValueError:
            pass
    raise ValueError(f"expected a rate such as '100/min', '1000/hour' or '5/10s', got {text!r}")


def new_limiter(storage: Storage | str | None = None) -> MovingWindowRateLimiter:
    """A limiter on `storage` (a `limits` storage or its URI; default: this process's memory)."""
    if isinstance(storage, str):
        found = storage_from_string(storage)
        if not isinstance(found, Storage):
            raise ValueError(f"{storage!r} is an asyncio storage; use a synchronous one")
        storage = found
    return MovingWindowRateLimiter(storage or MemoryStorage())


class RateLimit:
    """Each client address's budget, spent before authentication: guessing tokens from one
    address is slowed, and a flooding address refused here reaches nothing else."""

    name = "rate_limit"

    def __init__(self, limiter: MovingWindowRateLimiter, *, per_ip: str,
                 exempt: tuple[Network, ...]) -> None:
        self.limiter = limiter
        self.per_ip = parse_rate(per_ip)
        self.exempt = exempt

    def check(self, caller: Caller, principal: str) -> Verdict:
        if in_networks(caller.peer, self.exempt):
            return Allow()
        if not self.limiter.hit(self.per_ip, "ip", caller.peer):
            return refusal(self.limiter, self.per_ip, "ip", caller.peer,
                           "the limit for your address")
        return Allow()


class SharedLimits:
    """The budgets callers share, spent only once authentication admitted the caller: the
    gateway's global limit, and each chat-platform sender's (a platform speaks for many
    people from one address). Counted any earlier, anyone could spend them without a
    credential: requests with a wrong bot token naming `alice` would use up alice's budget,
    and a flood of unsigned requests the global one, locking everyone out."""

    name = "shared_limit"

    def __init__(self, limiter: MovingWindowRateLimiter, *, global_limit: str,
                 exempt: tuple[Network, ...], per_sender: str = "30/min",
                 chat_channels: frozenset[str] = frozenset()) -> None:
        self.limiter = limiter
        self.global_limit = parse_rate(global_limit)
        self.per_sender = parse_rate(per_sender)
        self.exempt = exempt
        self.chat_channels = chat_channels

    def check(self, caller: Caller, principal: str) -> Verdict:
        if caller.channel in self.chat_channels and caller.sender and caller.text is not None:
            key = f"{caller.channel}:{caller.sender}"
            if not self.limiter.hit(self.per_sender, "sender", key):
                return refusal(self.limiter, self.per_sender, "sender", key,
                               "your limit as a sender")
        if in_networks(caller.peer, self.exempt):
            return Allow()
        if not self.limiter.hit(self.global_limit, "global", "all"):
            return refusal(self.limiter, self.global_limit, "global", "all",
                           "the gateway's global limit")
        return Allow()


def refusal(limiter: MovingWindowRateLimiter, item: RateLimitItem, scope: str, key: str,
            which: str) -> Refuse:
    """`rate_limited`, saying which limit and when its window lets the caller in again."""
    reset = limiter.get_window_stats(item, scope, key).reset_time
    wait = max(1.0, round(reset - time.time()))
    return Refuse("rate_limited", f"Too many requests: {which} is {item} "
                  f"(auth.rate_limit). Try again in {wait:.0f} s.", wait)
