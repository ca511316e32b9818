"""Plain chat: knowledge and history in, the model (with tools) out.

The model is offered the skills and the tools listed in `tools.offer_to_model` as functions.
If it picks a skill, the pipeline runs that skill; if it calls a tool, the tool runs here (each
call a span), its answer goes back to the model, and this repeats up to `MAX_TOOL_ROUNDS` times.

A message with a `ClientContext` brings its own conversation (it replaces the session's stored
turns) and may bring functions of the client's own: they are offered too, and a call to one
ends the answer there, returned in `ChatOutcome.tool_calls` for the client to run (a call to a
tool of the gateway's in that same answer is not run; the trace's model span names it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gateway.core.context import build_messages, fit_client_messages
from gateway.core.files_for_model import view_for_model
from gateway.core.fit import CARD_WAIT, TurnFit, fit_turn
from gateway.core.grounding import TOP_K, choose_passages, grounding_prompt, sources_line
from gateway.core.message import Message, ModelInput, Trace
from gateway.core.sessions import SessionManager
from gateway.core.settings import Settings
from gateway.core.turn import Turn
from gateway.knowledge import KnowledgeBase, estimate_tokens
from gateway.models.base import Cancelled, ModelError, ModelResult, NoModelAvailable
from gateway.models.pool import ModelPool
from gateway.observe.redact import redact, redact_arguments
from gateway.skills.handlers import SkillHandler
from gateway.tools import Tool, ToolError, ToolRefused

log = logging.getLogger(__name__)

MAX_TOOL_ROUNDS = 4
MAX_TOOL_OUTPUT = 8000
MAX_GIVEN = 16 * 1024  # characters of the model's input kept for the console's replay


@dataclass(frozen=True)
class ChatOutcome:
    """Exactly one of: a reply text (with the calls the model made to the client's own
    functions, if any), an error (code, sentence for the sender), a skill the model chose
    (handler, the text it passes)."""

    text: str = ""
    error: tuple[str, str] | None = None
    skill: tuple[SkillHandler, str] | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()


class Memory(Protocol):
    """What the assistant's memory adds to a chat (`gateway.assistant`, handed in by the
    composition root): the owner's facts for this message, and a summary of the session's
    turns that no longer fit (each returns the text for the model, "" for none, and the trace
    detail); `summarise` may start writing a summary of `left_out` for a later message."""

    def recall(self, msg: Message, settings: Settings, text: str,
               budget: int) -> tuple[str, str]: ...

    def summary(self, settings: Settings, session_id: str) -> tuple[str, str]: ...

    def summarise(self, turn: Turn, pool: ModelPool, session_id: str,
                  left_out: list[tuple[str, str]]) -> str: ...


class ChatResponder:
    def __init__(self, sessions: SessionManager, knowledge: KnowledgeBase | None,
                 workspace: Path | None = None, memory: Memory | None = None) -> None:
        self.sessions = sessions
        self.knowledge = knowledge
        self.workspace = workspace or Path.cwd()  # where a message's files are kept
        self.memory = memory

    def answer(self, turn: Turn, pool: ModelPool, text: str, session_id: str) -> ChatOutcome:
        trace, settings, skills, files = turn.trace, turn.settings, turn.skills, turn.msg.files
        client = turn.msg.client_context
        tools = {**settings.model_tools, **turn.builtins.tools_for(turn.msg, settings)}
        theirs = {t["function"]["name"] for t in client.tools} if client else set()
        ours = {h.intent for h in skills.handlers} | set(tools)
        if theirs & ours:
            return ChatOutcome(error=("bad_request", "These tool names are the gateway's own "
                                      f"(a skill or a tool of the model): "
                                      f"{', '.join(sorted(theirs & ours))}; rename yours."))
        fit = fit_turn(pool.window(CARD_WAIT), [h.tool_spec() for h in skills.handlers] +
                       [t.spec() for t in tools.values()], client.tools if client else ())
        if theirs and not fit.window.tools:
            return ChatOutcome(error=("bad_request", f"The model '{pool.name}' cannot call "
                                      "tools: send the request without `tools`, or pick a "
                                      "model that can."))
        context_tokens = fit.budget  # the model's window, less the tools' declarations
        model = settings.config.models.get(pool.name)
        # documents get at most half the budget: the history and the passages the rest
        view = view_for_model(text, files, self.workspace, model=pool.name,
                              vision=bool(model and model.vision), budget=context_tokens // 2)
        with trace.step("knowledge") as span:
            hits, how = self.knowledge.find_explained(text, TOP_K) if self.knowledge else (
                [], "")
            passages = choose_passages(hits, text, context_tokens // 2)
            found = ", ".join(f"{p.passage.title or p.passage.source} "
                              f"({p.origin or f'{p.score:.1f}'})" for p in passages)
            span.detail = ": ".join(filter(None, (how, found or "no passage matched")))
        root = self.knowledge.folder.parent if self.knowledge else None
        recalled = self._recall(turn, text, session_id, context_tokens // 8)
        with trace.step("context") as span:
            budget = max(256, context_tokens - sum(estimate_tokens(p.passage.text)
                                                   for p in passages) - estimate_tokens(
                "".join(recalled)))
            if client is not None:  # the client keeps the conversation: it is the context
                messages, left_out = fit_client_messages(client.messages, budget)
                span.detail = (f"{len(client.messages) - left_out} of {len(client.messages)} "
                               "messages the client sent")
            else:
                history = self.sessions.history(session_id, settings.sessions)
                messages = build_messages(history, view.text, budget)
                messages[-1] = view.user_turn()
                kept = (len(messages) - 2) // 2
                span.detail = f"{kept} of {len(history)} turns" + (
                    f", {len(files)} file(s)" if files else "")
                if self.memory is not None and kept < len(history):
                    span.detail += "; " + self.memory.summarise(
                        turn, pool, session_id, history[:len(history) - kept])
            for part in recalled:  # the summary of older turns, the owner's facts
                at = next((i for i, m in enumerate(messages) if m["role"] != "system"), 0)
                messages.insert(at, {"role": "system", "content": part})
            span.detail += "; " + fit.describe()
            if passages and root is not None:
                at = next((i for i, m in enumerate(messages) if m["role"] != "system"),
                          len(messages))
                messages.insert(at, {"role": "system",
                                     "content": grounding_prompt(passages, root)})
        for _ in range(MAX_TOOL_ROUNDS + 1):
            result = self._call_model(turn, pool, messages, fit)
            if isinstance(result, ChatOutcome):
                return result
            for call in result.tool_calls:
                handler = next((h for h in skills.handlers if h.intent == call["name"]), None)
                if handler:
                    return ChatOutcome(skill=(handler, str(call["arguments"].get("text") or
                                                           text)))
            for_client = tuple(c for c in result.tool_calls if c["name"] in theirs)
            if for_client:  # the client runs them and sends their answers with its next turn
                return ChatOutcome(text=result.text, tool_calls=for_client)
            calls = [c for c in result.tool_calls if c["name"] in tools]
            if not calls:
                break
            asked: dict[str, Any] = {"role": "assistant", "content": result.text,
                                     "tool_calls": calls}
            messages.append(asked)
            messages += [self._run_tool(tools[c["name"]], c, trace) for c in calls]
        reply = result.text
        suffix = sources_line(passages, root) if passages and root is not None else ""
        suffix += view.notes_line()  # what the model could not take, never dropped silently
        if suffix and turn.on_delta:
            turn.on_delta(suffix)
        return ChatOutcome(text=reply + suffix)

    def _recall(self, turn: Turn, text: str, session_id: str, budget: int) -> list[str]:
        """The owner's facts and the session's summary for the model ([] without memory);
        a failure of memory is traced and logged, never the message's failure."""
        if self.memory is None:
            return []
        parts = []
        with turn.trace.step("memory") as span:
            try:
                facts, span.detail = self.memory.recall(turn.msg, turn.settings, text, budget)
                summary, said = (self.memory.summary(turn.settings, session_id) if
                                 turn.msg.client_context is None else ("", ""))
                span.detail += f"; {said}" if said else ""
                parts = [p for p in (summary, facts) if p]
            except Exception as e:
                log.exception("msg_id=%s memory failed; answering without it", turn.msg.id)
                span.outcome, span.detail = "error", redact(f"{type(e).__name__}: {e}")[:300]
        return parts

    def _call_model(self, turn: Turn, pool: ModelPool, messages: list[dict[str, Any]],
                    fit: TurnFit) -> ModelResult | ChatOutcome:
        trace, msg_id = turn.trace, turn.msg.id
        with trace.step("model") as span:
            record_input(trace, pool.name, messages)
            try:
                result = pool.chat(messages, on_delta=turn.on_delta, cancel=turn.cancel,
                                   tools=fit.offered or None, channel=turn.msg.channel,
                                   num_ctx=fit.num_ctx_for(messages))
            except NoModelAvailable as e:
                span.outcome, span.detail = "error", redact(str(e))[:500]
                log.warning("msg_id=%s %s", msg_id, e)
                return ChatOutcome(error=("model_unavailable", e.advice))
            except Cancelled as e:
                span.outcome, span.detail = "cancelled", str(e)
                log.info("msg_id=%s sender went away; model call cancelled", msg_id)
                return ChatOutcome(error=("cancelled", "The sender disconnected."))
            except ModelError as e:
                span.outcome, span.detail = "error", redact(str(e))[:500]
                log.warning("msg_id=%s model refused: %s", msg_id, e)
                return ChatOutcome(error=("model_error", f"The model '{pool.name}' refused "
                                          "the call; `moltbot trace` with this msg_id shows "
                                          "why."))
            if trace.model_input:
                trace.model_input.prompt_tokens += result.prompt_tokens
                trace.model_input.completion_tokens += result.completion_tokens
            called = ", ".join(c["name"] for c in result.tool_calls)
            span.detail = f"{pool.name} via {redact(result.endpoint)}" + (
                f", calls {called}" if called else "") + (
                "" if fit.window.tools else f"; tools not offered: {fit.window.model} cannot "
                "call tools")
        return result

    def _run_tool(self, tool: Tool, call: dict[str, Any], trace: Trace) -> dict[str, Any]:
        inner: list[dict[str, Any]] = []
        with trace.step(f"tool:{tool.name}") as span:
            span.detail = redact_arguments(call["arguments"])[:300]
            try:
                output, inner = tool.traced(call["arguments"])
            except ToolRefused as e:
                span.outcome, output, inner = "refused", f"refused: {e}", e.spans
            except ToolError as e:
                span.outcome, output, inner = "error", f"error: {e}", e.spans
        for step in inner:  # a tool of several steps (the browser): each one on the timeline
            trace.add_at(str(step["step"]), span.begin + float(step["offset_ms"]) / 1000,
                         float(step["duration_ms"]), str(step["outcome"]),
                         redact(str(step["detail"]))[:300])
        return {"role": "tool", "tool_call_id": call["id"], "name": tool.name,
                "content": output[:MAX_TOOL_OUTPUT]}


def record_input(trace: Trace, model: str, messages: list[dict[str, Any]]) -> None:
    """Keep what this model call is given (the latest call of a tool round trip holds all the
    earlier ones), masked and within `MAX_GIVEN`: each turn's text is cut to an equal share,
    so the system prompt, the knowledge passages and the question all stay visible. The
    masking runs once over the whole record, not per turn: per turn it was ~100 calls and most
    of this function's cost with a long history."""
    share = max(256, MAX_GIVEN // max(1, len(messages)))
    kept = []
    for m in messages:
        content = m.get("content") or ""
        if len(m) == 2 and type(content) is str and len(content) <= share:
            kept.append(m)  # most turns: role and a short text, kept as they are
            continue
        content = str(content)
        if len(content) > share:
            content = content[:share] + f" [... {len(content) - share} characters cut]"
        turn: dict[str, Any] = {"role": m.get("role"), "content": content}
        if m.get("tool_calls"):
            turn["tool_calls"] = [{"name": c["name"], "arguments": redact_arguments(
                c.get("arguments") or {})} for c in m["tool_calls"]]
        if m.get("name"):
            turn["name"] = m["name"]
        kept.append(turn)
    given = json.dumps(kept, ensure_ascii=False)
    while len(given) > MAX_GIVEN and len(kept) > 2:  # many short turns: oldest go first
        del kept[1]
        given = json.dumps(kept, ensure_ascii=False)
    given = redact(given)
    before = trace.model_input
    trace.model_input = ModelInput(model, given,
                                   before.prompt_tokens if before else 0,
                                   before.completion_tokens if before else 0)
