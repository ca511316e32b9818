"""One SSL context per process for the channels' platform clients (made on first use): creating
one on the gevent loop was seen blocking it, so clients share it instead of making their own."""

from __future__ import annotations

import ssl

import httpx

from gateway.live.reload import off_loop

_context: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    global _context
    if _context is None:
        # loading the CA bundle is C work: on the thread pool (measured: a reload's client
        # creation held the loop over 0.5 s on a busy machine)
        _context = off_loop(httpx.create_ssl_context)
    return _context
