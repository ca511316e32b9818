"""Address lists as config.yaml writes them (`127.0.0.0/8`, `::1`, `10.0.0.5`), parsed once and
asked on every message: allowlists, rate-limit exemptions, trusted proxies, the console's door.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """CIDR entries (`127.0.0.0/8`, `::1`, `10.0.0.5`); raises ValueError naming a bad one."""
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries)


@lru_cache(maxsize=8192)
def in_networks(address: str, networks: tuple[Network, ...]) -> bool:
    """Whether `address` is in one of `networks`; remembered, since every message asks the
    same few questions (its peer against the allowlists) and parsing costs microseconds."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)
