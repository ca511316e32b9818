# skills/telegram_bot.py: send your own Telegram chat a message from any channel.
#
#   /notify <text>      sends <text> to the owner's Telegram chat
#
# Set the owner's chat id (the number the bot sees as your chat; send the bot any message and
# `moltbot trace` shows it) in config.yaml:
#   skills:
#     env:
#       TELEGRAM_OWNER_CHAT: "123456789"
# The message goes through the gateway's outbox: stored first, retried while Telegram is away.
import os

from moltbot_sdk import SendError, Skill, context


class TelegramNotifier(Skill):
    @context.handle(intent="notify", command="/notify")
    def notify(self, msg):
        owner = os.environ.get("TELEGRAM_OWNER_CHAT", "")
        text = msg["text"].strip()
        if not owner:
            return {"reply": "Set skills.env.TELEGRAM_OWNER_CHAT in config.yaml to your "
                             "Telegram chat id first."}
        if not text:
            return {"reply": "Usage: /notify <text>"}
        try:
            context.send("telegram", owner, f"{msg.get('sender', 'someone')} says: {text}")
        except SendError as e:
            return {"reply": f"Not sent: {e}"}
        return {"reply": "Sent to your Telegram."}
