"""What the model is given of the files a message carried.

- Text documents (text/*, JSON, CSV, Markdown, YAML, XML and the like) go into the sender's turn
  as text, each between a header and an end line, all of them together within the budget they
  are given (a share of `gateway.context_tokens`); a document cut to fit says so.
- Images go to a model that takes them (`models.<name>.vision: true`), as the backend expects
  (Ollama `images`, OpenAI `image_url` parts: each provider's `_wire`). A model without vision
  is told an image was sent that it cannot see.
- Anything else (PDF, Word, archives: no reader for them is a dependency) is named with "this
  document type is not read".

Nothing is dropped silently: whatever the model could not take is also in `notes`, which the
chat responder appends to the reply, so the person knows what the model did not see.
"""

from __future__ import annotations

import base64
import codecs
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from gateway.core.message import Attachment
from gateway.knowledge import estimate_tokens

TEXT_TYPES = ("application/json", "application/xml", "application/yaml", "application/x-yaml",
              "application/toml", "application/javascript", "application/x-sh",
              "application/sql", "application/csv")
TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".csv", ".tsv", ".json", ".yaml", ".yml", ".xml",
                 ".html", ".htm", ".log", ".ini", ".toml", ".py", ".js", ".ts", ".sh", ".sql",
                 ".rst")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


@dataclass(frozen=True)
class ModelView:
    """The sender's turn as the model gets it: `text` (their words, then each file's text or
    a note about it), `images` (`{"media_type", "data"}` base64, only for a vision model) and
    `notes` for the person: what the model could not take."""

    text: str
    images: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def user_turn(self) -> dict[str, Any]:
        turn: dict[str, Any] = {"role": "user", "content": self.text}
        if self.images:
            turn["images"] = self.images
        return turn

    def notes_line(self) -> str:
        """The sentence appended to the reply ("" when the model took everything)."""
        return f"\n\n[Not seen by the model: {'; '.join(self.notes)}.]" if self.notes else ""


def is_text_document(f: Attachment) -> bool:
    return f.media_type.startswith("text/") or f.media_type in TEXT_TYPES or \
        PurePosixPath(f.name).suffix.lower() in TEXT_SUFFIXES


def is_image(f: Attachment) -> bool:
    return f.media_type in IMAGE_TYPES


def view_for_model(text: str, files: tuple[Attachment, ...], workspace: Path, *,
                   model: str, vision: bool, budget: int) -> ModelView:
    """The turn for `model`; documents share `budget` tokens (estimated)."""
    if not files:
        return ModelView(text)
    parts = [text] if text.strip() else []
    images: list[dict[str, str]] = []
    notes: list[str] = []
    left = budget
    for f in files:
        about = f'"{f.name}" ({f.media_type}, {f.size} bytes)'
        if is_image(f) and vision:
            data = base64.b64encode((workspace / f.path).read_bytes()).decode("ascii")
            images.append({"media_type": f.media_type, "data": data})
            parts.append(f"[Attached image {about}: shown to you with this message.]")
        elif is_image(f):
            parts.append(f"[Attached image {about}: you cannot see images, so it is not "
                         "shown to you; tell the person if it matters.]")
            notes.append(f"{f.name} is an image and the model '{model}' cannot see images "
                         f"(models.{model}.vision in config.yaml is for a model that can)")
        elif is_text_document(f):
            content, whole, readable = _read_text(workspace / f.path, left)
            if not readable:
                parts.append(f"[Attached file {about}: not UTF-8 text, so it is not read.]")
                notes.append(f"{f.name} is not UTF-8 text, so it was not read")
                continue
            left -= estimate_tokens(content)
            end = "" if whole else (f"\n[... the rest of \"{f.name}\" is cut: it does not "
                                    "fit in the context budget]")
            parts.append(f"[Attached file {about}:]\n{content}{end}\n[End of \"{f.name}\"]")
            if not whole:
                notes.append(f"only the first part of {f.name} fitted in the model's context")
        else:
            parts.append(f"[Attached file {about}: this document type is not read, so only "
                         "its name is known.]")
            notes.append(f"{f.name} ({f.media_type}) is a document type that is not read")
    return ModelView("\n\n".join(parts), images, notes)


def _read_text(path: Path, budget: int) -> tuple[str, bool, bool]:
    """(text within `budget` tokens, whether it is whole, whether it is UTF-8 text)."""
    limit = max(0, budget) * 4 + 4  # bytes: at most 4 characters a token, 1+ byte each
    with path.open("rb") as f:
        head = f.read(limit + 1)
    whole = len(head) <= limit
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    try:
        content = decoder.decode(head[:limit], final=whole)
    except UnicodeDecodeError:
        return "", False, False
    content = content.replace("\r\n", "\n")
    while content and estimate_tokens(content) > budget:
        content = content[:max(0, int(len(content) * budget / estimate_tokens(content)) - 1)]
        whole = False
    return content, whole and bool(content or not head), True
