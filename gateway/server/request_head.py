"""A request's header lines, read for gevent's pywsgi without the `email` package.

pywsgi parses each request's headers with `http.client.parse_headers`, which hands them to
`email.feedparser`: 63 us for an ordinary request head of six headers, most of it generality
HTTP does not need; reading the lines here into the same `OldMessage` pywsgi expects takes
7 us (`bench/README.md`, step 9). The limits are `http.client`'s (a line of at most 64 KB, at
most 100 headers); a line that is not `name: value` makes the request a 400, as a head too
long does (pywsgi refuses a message whose `status` is set).
"""

from __future__ import annotations

from typing import Any

from gevent.pywsgi import OldMessage

MAX_LINE = 65536
MAX_HEADERS = 100
_END = (b"\r\n", b"\n", b"")


def read_head(fp: Any, *_: Any) -> OldMessage:
    """The header lines up to the blank line that ends them (pywsgi's `MessageClass`)."""
    message = OldMessage()
    headers: list[tuple[str, str]] = message._headers  # email's own list of (name, value)
    while (line := fp.readline(MAX_LINE + 1)) not in _END:
        if len(line) > MAX_LINE:
            message.status = "Line too long"
            return message
        text = line.decode("iso-8859-1")
        if text[0] in " \t" and headers:  # an obsolete folded line continues the last value
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {text.strip()}")
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip():
            message.status = f"Invalid header line: {text.strip()[:60]!r}"
            return message
        if len(headers) == MAX_HEADERS:
            message.status = f"More than {MAX_HEADERS} headers"
            return message
        headers.append((name, value.strip()))
    return message
