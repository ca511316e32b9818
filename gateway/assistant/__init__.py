"""The assistant's own abilities beside chat and skills: memory of what the owner told it
(`memory*`), reminders and schedules. They sit above the core (which knows them only through
`gateway.core.builtins` and small callables) and are wired in by the composition root."""
