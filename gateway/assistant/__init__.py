"""The assistant's own features beside the user's skills: reminders and schedules (memory too),
wired in by the composition root; the core never imports them."""
