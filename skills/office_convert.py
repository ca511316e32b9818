"""Read office documents (.docx, .odt, .doc, .rtf, .xlsx, .ods, .pptx) that doc_parser cannot:
`/convert <file in files/>` starts the `converter` Compose stack (LibreOffice, headless; see
skills/stacks/converter/compose.yaml), has it convert the file to text, and answers with a
summary of the text as doc_parser makes one. The stack stops by itself after
`tools.compose_idle` without use (10 minutes unless config.yaml says otherwise).

Needs a compose engine (`moltbot doctor` names the one it finds) and, in config.yaml:
    tools:
      compose: {converter: skills/stacks/converter/compose.yaml}
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from moltbot_sdk import KnowledgeError, Skill, context, parse_document

STACK = "converter"
READABLE = (".docx", ".doc", ".odt", ".rtf", ".xlsx", ".xls", ".ods", ".pptx", ".ppt", ".odp")
START_WAIT = 60.0  # seconds for the service to answer after `up` (the first build is longer)


def body(answer: str) -> dict[str, Any]:
    """The JSON body of the compose tool's `call` answer ("HTTP 200 ...\\n\\n{...}")."""
    status, _, text = answer.partition("\n\n")
    try:
        found = json.loads(text)
    except ValueError:
        found = {}
    if not status.startswith("HTTP 200") or not isinstance(found, dict):
        raise RuntimeError(found.get("error") if isinstance(found, dict) and
                           found.get("error") else status.splitlines()[0])
    return found


def convert(name: str) -> str:
    """Start the stack if it is down, wait until it answers, convert `name` (in files/)."""
    context.tool("compose", stack=STACK, action="up")
    deadline = time.monotonic() + START_WAIT
    while True:
        try:
            context.tool("compose", stack=STACK, action="call", service="convert", port=8080,
                         path="/health")
            break
        except Exception:  # still starting: its port does not answer yet
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    answer = context.tool("compose", stack=STACK, action="call", service="convert", port=8080,
                          path="/convert", method="POST", json={"file": name, "to": "txt"})
    return str(body(answer)["output"])


class OfficeConvert(Skill):
    @context.handle(intent="office_convert", command="/convert", timeout=300,
                    description="Convert an office document in files/ to text and summarise it")
    def run(self, msg: dict[str, Any]) -> str:
        text = str(msg.get("text") or "").strip()
        path = Path(text.removeprefix("files/"))
        if not text or path.is_absolute() or ".." in path.parts:
            return "usage: /convert <file in files/>, e.g. /convert inbox/report.docx"
        if path.suffix.lower() not in READABLE:
            return (f"{path.name}: /convert reads {', '.join(READABLE)}; for .md, .csv and "
                    ".txt use /parse")
        if not (Path("files") / path).is_file():
            return f"no such file in files/: {path}"
        try:
            output = convert(path.as_posix())
            doc = parse_document(Path("files") / output)
        except KnowledgeError as e:
            return f"{path.name}: {e.problem}"
        except Exception as e:
            return f"{path.name} could not be converted: {e}"
        sections = doc["sections"]
        words = sum(len(s["text"].split()) for s in sections)
        first = next((s["text"] for s in sections if s["text"].strip()), "")[:300]
        return (f"{path.name}: {len(sections)} paragraphs, {words} words (text in "
                f"files/{output})\n{first}")
