"""Lockout: too many bad credentials from one address lock it out for a while, good token or
not (`auth.lockout`: failures within window -> duration). Guessing tokens at hundreds a second
then costs an attacker the address for minutes. Per process (`gateway.state`), like the cache.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.guards.rate_limit import Network, in_networks


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

    def locked_for(self, address: str, policy: LockoutPolicy) -> float:
        """Seconds the address stays locked out (0: it is not)."""
        if in_networks(address, policy.exempt):
            return 0.0
        with self._lock:
            until = self._locked.get(address, 0.0)
            left = until - self.clock()
            if left <= 0 and until:
                del self._locked[address]
            return max(0.0, left)

    def failed(self, address: str, policy: LockoutPolicy) -> bool:
        """Count one bad credential; True when it locks the address out."""
        if in_networks(address, policy.exempt):
            return False
        now = self.clock()
        with self._lock:
            if len(self._failures) >= self.MAX_ADDRESSES:
                self._failures.clear()
            times = self._failures.setdefault(address, deque())
            times.append(now)
            while times and times[0] <= now - policy.window:
                times.popleft()
            if len(times) < policy.failures:
                return False
            del self._failures[address]
            self._locked[address] = now + policy.duration
            return True
