"""The network peer of a platform's messages that arrive on a connection the gateway opened
(a long poll, a stream): the platform's API host, resolved (cooperatively under gevent)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


def platform_address(url: str) -> str:
    """`url`'s host as an IP address, which the address allowlist judges like any peer's, or
    "" when it does not resolve (yet)."""
    try:
        return socket.gethostbyname(urlsplit(url).hostname or "")
    except OSError:
        return ""
