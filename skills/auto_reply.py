# skills/auto_reply.py 示例
from moltbot_sdk import Skill, context


class FAQHandler(Skill):
    def __init__(self):
        self.knowledge_base = load_markdown("knowledge/faq.md")  # noqa: F821 - provided by the loader

    @context.handle(intent="faq_query")
    def process_query(self, msg):
        question = msg["text"].lower()
        answer = self.knowledge_base.search(question)
        return {"reply": answer or "未找到相关答案"}
