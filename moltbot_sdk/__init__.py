"""moltbot_sdk: what a skill in `~/ai-gateway/skills` imports (`Skill`, `context`, loaders)."""
