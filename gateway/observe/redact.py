"""Masking secrets out of text before it is kept: log lines, traces, tool-call arguments, URLs.

Every log handler redacts through `redact`; the trace keeps tool arguments through
`redact_arguments`; URLs shown anywhere go through `mask_url(s)`.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

# Each pattern with the plain substrings (of the lowercased text) it cannot match without:
# groups of which one must be there whole. Most log lines hold none, and a substring test is
# a hundred times cheaper than the case-insensitive regular expressions (70 us for a
# 450-character access line, measured).
_SECRETS = [
    # "://" and "@" together: every link has "://" and every ECS line "@timestamp", only a
    # link with a password has both
    ((("://", "@"),), re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/@\s:]*:[^/@\s]*@"),
     r"\1***@"),
    ((("mb_",),), re.compile(r"\bmb_[A-Za-z0-9_\-]{16,}"), "mb_***"),
    ((("bearer",),), re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/\-]{8,}=*"), r"\1***"),
    # a quote may be escaped (`\"`): the pattern also runs over JSON text, such as the model's
    # recorded input, where `api_key: "sk-..."` reads `api_key: \"sk-...\"`
    ((("key",), ("token",), ("secret",), ("password",)),
     re.compile(r"(?i)((?:api[_-]?key|token|secret|password)\\?[\"']?\s*[:=]\s*\\?[\"']?)"
                r"[^\s\"'&,\\]{4,}"), r"\1***"),
]
# Characters that (?i) matches to an ASCII letter but that lower() does not turn into one.
_FOLD = str.maketrans({"\u0131": "i", "\u017f": "s"})


def redact(text: str) -> str:
    lowered = text.lower()
    if not lowered.isascii():
        lowered = lowered.translate(_FOLD)
    for needs, pattern, replacement in _SECRETS:
        if any(all(n in lowered for n in group) for group in needs):
            text = pattern.sub(replacement, text)
    return text


def mask_url(url: str) -> str:
    """The URL with every query-string value masked and the fragment dropped: webhooks carry
    their keys there (`?key=...`, `&access_token=...`), under any name."""
    parts = urlsplit(url)
    query = "&".join(f"{k}=***" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


_URL = re.compile(r"(?i)\bhttps?://[^\s\"'<>]+")


def mask_urls(text: str) -> str:
    """Every http(s) URL in `text` through `mask_url` (only when it has a query or fragment),
    then the usual redaction (a password in the URL, a token elsewhere)."""
    if "://" in text:
        text = _URL.sub(lambda m: mask_url(m.group(0)) if any(c in m.group(0) for c in "?#")
                        else m.group(0), text)
    return redact(text)


def redact_arguments(arguments: dict[str, Any]) -> str:
    """A tool call's arguments as the trace may keep them: every header value and every
    query-string value masked (either may carry a key), then the usual redaction."""

    def clean(key: str, value: Any) -> Any:
        if key == "headers" and isinstance(value, dict):
            return {name: "***" for name in value}
        if key == "url" and isinstance(value, str):
            return mask_url(value)
        return value

    shown = {k: clean(k, v) for k, v in arguments.items()}
    return redact(json.dumps(shown, ensure_ascii=False, default=str))
