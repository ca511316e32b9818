"""Reading a `multipart/form-data` message (HTTP): its fields into a payload, its files
streamed straight into the inbox.

Werkzeug's parser writes each file part into the stream our factory returns (an inbox file that
counts itself against `gateway.max_file_bytes` and `max_upload_bytes` and stops the read the
moment one is passed), never into memory or /tmp. The request as a whole may be
`max_upload_bytes` plus `FORM_ROOM` (the text fields and each part's headers): a larger
Content-Length is refused before a byte of the body is read, a chunked body as soon as it passes
it. Text fields are held in memory, at most `FORM_ROOM` each.
"""

from __future__ import annotations

from typing import IO, Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from gateway.core.inbox import MAX_FILES, FileRefused, Receipt

FORM_ROOM = 256 * 1024
FIELDS = ("text", "sender", "chat", "id")


def read_multipart(req: Request, receipt: Receipt) -> dict[str, Any]:
    """The form's message fields (`text`, `sender`, `chat`, `id`; the files are in
    `receipt`). Raises FileRefused saying what is wrong."""
    limit = receipt.caps.message + FORM_ROOM
    req.max_content_length = limit  # before the stream is first touched: it is cached

    def stream_factory(total_content_length: int | None, content_type: str | None,
                       filename: str | None, content_length: int | None = None) -> IO[bytes]:
        incoming: Any = receipt.open(filename or "file", content_type)
        return incoming  # a writable stream: werkzeug writes, seeks and closes it

    parser = FormDataParser(stream_factory, max_form_memory_size=FORM_ROOM,
                            max_form_parts=MAX_FILES + 2 * len(FIELDS), silent=False)
    try:
        _, form, files = parser.parse(req.stream, req.mimetype, req.content_length,
                                      req.mimetype_params)
    except RequestEntityTooLarge as e:
        raise FileRefused("payload_too_large", f"The request is larger than {limit} bytes "
                          "(gateway.max_upload_bytes for its files, plus 256 KiB for the "
                          "rest); send fewer or smaller files.") from e
    except ValueError as e:
        raise FileRefused("bad_request", "The multipart body cannot be read "
                          f"({e}); send fields text, sender, chat, id and the files as "
                          "parts named file, as `curl -F text=... -F file=@notes.md` "
                          "does.") from e
    for name in files:
        if name != "file":
            raise FileRefused("bad_request", f"A file part is named {name!r}; name each "
                              "file part `file` (curl -F file=@notes.md).")
    return {name: form[name] for name in FIELDS if name in form}
