"""What a complete trace of a chat answer holds, for each channel's end-to-end test: the
message answered, every step of the way there with its outcome, and for a push channel the
reply's delivery on it (issue 17: "in on the platform, reply out on it, trace complete")."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import GatewayProcess

# guard chain, stored, its chat's turn, session, routed, knowledge and memory looked up, context,
# model
CHAT_STEPS = ("guard", "store", "queue", "session", "route", "knowledge", "memory", "context",
              "model")


def assert_complete_trace(gw: GatewayProcess, msg_id: str,
                          sent_on: str | None = None) -> dict[str, Any]:
    """The trace of `msg_id` (`GET /api/v1/messages/<id>/trace`, what `moltbot trace`
    shows): each of CHAT_STEPS once and ok, in order; `sent_on`: one delivery, sent there."""
    answer = httpx.get(f"{gw.url}/api/v1/messages/{msg_id}/trace", headers=gw.headers,
                       timeout=10)
    assert answer.status_code == 200, answer.text
    trace: dict[str, Any] = answer.json()
    assert (trace["status"], trace["route"]) == ("answered", "chat:model"), trace
    steps = [(s["step"], s["outcome"]) for s in trace["spans"]]
    assert steps == [(step, "ok") for step in CHAT_STEPS], steps
    if sent_on is not None:
        assert [(d["channel"], d["state"]) for d in trace["deliveries"]] == [
            (sent_on, "sent")], trace["deliveries"]
    return trace
