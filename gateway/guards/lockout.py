"""Lockout: too many bad credentials from one address lock it out for a while, good token or
not (`auth.lockout`: failures within window -> duration). Guessing tokens at hundreds a second
then costs an attacker the address for minutes. Per process (`gateway.core.state`), like the cache.

Failures are counted per address and per kind of caller: a web page (a request with an
`Origin` header) and the owner's own programs (the CLI, the tray, scripts) from the same
address are two books. Any page open in the owner's browser can send bad credentials to
127.0.0.1; it may lock out browsers on that address, never the owner's valid token used from
a program. Foreign origins are refused at the door before they are counted at all.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.common.networks import Network, in_networks


@dataclass(frozen=True)
class LockoutPolicy:
    failures: int = 10
    window: float = 60.0
    duration: float = 300.0
    exempt: tuple[Network, ...] = ()


class LockoutBook:
    """Bad-credential times and lock-out ends per address; bounded by evicting idle entries."""

    MAX_ADDRESSES = 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._locked: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked_for(self, address: str, policy: LockoutPolicy, browser: bool = False) -> float:
        """Seconds the address (its browsers, or its programs) stays locked out (0: not)."""
        if in_networks(address, policy.exempt):
            return 0.0
        key = _key(address, browser)
        with self._lock:
            until = self._locked.get(key, 0.0)
            left = until - self.clock()
            if left <= 0 and until:
                del self._locked[key]
            return max(0.0, left)

    def failed(self, address: str, policy: LockoutPolicy, browser: bool = False) -> bool:
        """Count one bad credential; True when it locks the address (that kind) out."""
        if in_networks(address, policy.exempt):
            return False
        key = _key(address, browser)
        now = self.clock()
        with self._lock:
            if len(self._failures) >= self.MAX_ADDRESSES:
                self._failures.clear()
            times = self._failures.setdefault(key, deque())
            times.append(now)
            while times and times[0] <= now - policy.window:
                times.popleft()
            if len(times) < policy.failures:
                return False
            del self._failures[key]
            self._locked[key] = now + policy.duration
            return True


def _key(address: str, browser: bool) -> str:
    return f"{address} browser" if browser else address
