"""The rules of a message's fields, the same on every channel (the intake applies them), and
reading a JSON body.

Bad input gets a sentence that says what to fix: JSON nested too deep (Python's parser would
raise RecursionError), text that cannot be stored (a lone surrogate such as "\\ud800" is valid
JSON but not UTF-8), fields of the wrong type or size.
"""

from __future__ import annotations

import json
from typing import Any

MAX_TEXT = 32_000
MAX_FIELD = 256
EXAMPLE = '{"type": "message", "id": "1", "text": "hello", "chat": "my-chat"}'


def decode_json(data: str | bytes | None) -> tuple[Any, str | None]:
    """The parsed value, or None and what is wrong with it."""
    if data is None or data == b"" or data == "":
        return None, "The body is empty: send a JSON object."
    try:
        return json.loads(data), None
    except RecursionError:
        return None, "The JSON is nested too deeply; send a flat object."
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"The body is not valid UTF-8 JSON ({type(e).__name__}); send an object."


def validate_message_fields(data: Any, has_files: bool = False) -> str | None:
    """What is wrong with an inbound message object, in words a client author can act on.
    A message that carries files may have no text."""
    if not isinstance(data, dict):
        return f"Send a JSON object such as {EXAMPLE}."
    text = data.get("text", "" if has_files else None)
    if not isinstance(text, str):
        return '"text" must be a string.' if has_files else '"text" must be a non-empty string.'
    if not text.strip() and not has_files:
        return '"text" must be a non-empty string.'
    if len(text) > MAX_TEXT:
        return f'"text" is longer than {MAX_TEXT} characters.'
    for field in ("sender", "chat", "id"):
        value = data.get(field)
        if value is not None and (not isinstance(value, str | int) or isinstance(value, bool)
                                  or len(str(value)) > MAX_FIELD):
            return f'"{field}" must be a string of at most {MAX_FIELD} characters.'
    for field in ("text", "sender", "chat", "id"):
        value = data.get(field)
        if isinstance(value, str) and not storable(value):
            return (f'"{field}" contains invalid Unicode (a lone surrogate such as \\ud800); '
                    "send UTF-8 text.")
    return None


def storable(text: str) -> bool:
    """Whether `text` can be stored as UTF-8 (a lone surrogate such as "\\ud800" cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
