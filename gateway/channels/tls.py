"""One SSL context per process for the channels' platform clients (made on first use): creating
one on the gevent loop was seen blocking it, so clients share it instead of making their own."""

from __future__ import annotations

import ssl

import httpx

_context: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    global _context
    if _context is None:
        _context = httpx.create_ssl_context()
    return _context
