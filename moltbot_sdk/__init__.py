"""moltbot_sdk: what a skill in `~/ai-gateway/skills` imports.

```python
from moltbot_sdk import Skill, context

class FAQHandler(Skill):
    def __init__(self):
        self.knowledge_base = load_markdown("knowledge/faq.md")

    @context.handle(intent="faq_query")
    def process_query(self, msg):
        answer = self.knowledge_base.search(msg["text"].lower())
        return {"reply": answer or "未找到相关答案"}
```

`load_markdown` and `load_csv` are also placed in every skill module's namespace by the loader
(the guide's example uses them without importing them). `parse_document(path)` gives a
document's sections (or a CSV's rows) as JSON-ready data, split as the knowledge base splits
it; `skills/doc_parser.py` shows it in use. Relative paths are relative to the workspace
(`$MOLTBOT_HOME`, default `~/ai-gateway`). A document that cannot be read or parsed raises
`KnowledgeError`, whose message names the file and the fix.
"""

from gateway.knowledge import KnowledgeError
from moltbot_sdk.documents import parse_document
from moltbot_sdk.knowledge import Knowledge, load_csv, load_markdown
from moltbot_sdk.skill import HandlerSpec, ScheduleSpec, SendError, Skill, context

__all__ = ["HandlerSpec", "Knowledge", "KnowledgeError", "ScheduleSpec", "SendError", "Skill",
           "context", "load_csv", "load_markdown", "parse_document"]
