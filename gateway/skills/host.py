"""The skill host: a child process that imports the user's Python skills and runs their handlers.

Why a process and not a thread: a handler that loops on the CPU would hold the GIL and slow
every other conversation, and a thread cannot be stopped. In its own process a runaway handler
costs the gateway nothing and is killed when its time-out passes.

Protocol: one JSON object per line on stdin, one answer per line on stdout.
- `{"op": "load", "files": {label: source text}, "workspace": path, "config": {...}}` ->
  `{"skills": {label: [spec, ...]}, "schedules": {label: [{"intent": "@function", "cron",
  "channel", "chat", "text"}, ...]}, "errors": {label: problem}}`. The gateway sends the text of
  each file (not the path), so a host restarted after a kill can load the last good version
  even when the file on disk is broken.
  The host keeps the handlers of the last two loads (`"generation"`), so a message routed by the
  previous snapshot still finishes on the code that snapshot listed.
- `{"op": "call", "generation": n, "source": label, "intent": name, "msg": {...}}` ->
  `{"reply": text, "files": [path, ...], "spans": [...]}` or `{"error": text, "spans": [...]}`
  (`files`: what the handler answered with, `{"reply": ..., "files": [...]}`; the gateway
  checks each path before anything is sent).
- While a call runs, the host may ask the gateway: `context.send(...)` writes
  `{"op": "send", "channel", "chat", "text", "to", "files"}` and reads one line back,
  `{"id", "state"}` (stored in the outbox) or `{"error", "code"}`; `context.tool("clock.now",
  ...)` (an MCP server's tool) writes `{"op": "mcp", "tool", "arguments"}` and reads `{"text"}`
  or `{"error", "code"}`. A line with `"op"` is such a question; the call's own answer never
  has one.
Anything a skill prints goes to stderr, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from gateway.observe.redact import redact, redact_arguments
from gateway.skills.errors import SkillLoadError
from gateway.skills.handlers import SkillHandler
from gateway.skills.python_skill import load_python_source
from moltbot_sdk.skill import SendError, context

AskGateway = Callable[[dict[str, Any]], dict[str, Any]]

MODEL_ONLY = {"offer_to_model", "model_read", "model_write"}  # the model's limits, not skills'
GATEWAY_HOSTED = ("browser", "compose")  # answered by the gateway (gateway/tools/hosted.py)


class HostRuntime:
    """What `context.tool(...)`, `context.ask(...)` and `context.send(...)` reach inside a
    handler."""

    def __init__(self, workspace: Path, config: dict[str, Any],
                 gateway: AskGateway | None = None) -> None:
        """`config` is `gateway.config.for_skills`: the models, the tools' limits and the
        chat model, each checked again here by its own options class. `gateway` asks the
        gateway a question mid-call (`context.send`)."""
        from gateway.models.options import ModelConfig
        from gateway.models.registry import build_pools
        from gateway.tools.options import HOSTED_KEYS, ToolsConfig
        from gateway.tools.registry import build_tools

        tools = ToolsConfig.model_validate(config.get("tools") or {})
        models = {name: ModelConfig.model_validate(given)
                  for name, given in (config.get("models") or {}).items()}
        self.tools = build_tools(workspace, **tools.model_dump(exclude=MODEL_ONLY | HOSTED_KEYS))
        self.pools = build_pools(models, str(workspace / "config.yaml"),
                                 context_tokens=config.get("context_tokens") or 2048)
        self.chat_model = config.get("chat_model")
        self.spans: list[dict[str, Any]] = []
        self.started = time.perf_counter()
        self.gateway = gateway

    def _span(self, step: str, begin: float, outcome: str, detail: str) -> None:
        self.spans.append({"step": step, "start_ms": (begin - self.started) * 1000,
                           "duration_ms": (time.perf_counter() - begin) * 1000,
                           "outcome": outcome, "detail": detail[:300]})

    def tool(self, name: str, arguments: dict[str, Any]) -> str:
        from gateway.tools.base import ToolError, ToolRefused

        begin = time.perf_counter()
        tool = self.tools.get(name)
        if tool is None and "." in name:
            return self.mcp_tool(name, arguments, begin)
        if tool is None and name in GATEWAY_HOSTED:
            return self.hosted_tool(name, arguments, begin)
        if tool is None:
            self._span(f"tool:{name}", begin, "error", "no such tool")
            raise ToolError(f"no tool {name!r}; tools: "
                            f"{', '.join(sorted([*self.tools, *GATEWAY_HOSTED]))}")
        try:
            result = tool.call(arguments)
        except ToolRefused as e:
            self._span(f"tool:{name}", begin, "refused", str(e))
            raise
        except ToolError as e:
            self._span(f"tool:{name}", begin, "error", str(e))
            raise
        self._span(f"tool:{name}", begin, "ok", "")
        return result

    def mcp_tool(self, name: str, arguments: dict[str, Any], begin: float) -> str:
        """`context.tool("clock.now", ...)`: the gateway's MCP servers answer, through the
        pipe, within the server's `timeout`; ToolError with the reason when it fails."""
        from gateway.tools.base import ToolError

        shown = redact_arguments(arguments)
        if self.gateway is None:
            self._span(f"tool:{name}", begin, "error", "no line to the gateway")
            raise ToolError(f"{name}: MCP tools need the gateway (this host has no line to it)")
        answer = self.gateway({"op": "mcp", "tool": name, "arguments": arguments})
        if "error" in answer:
            self._span(f"tool:{name}", begin, "error", f"{shown} -> {redact(answer['error'])}")
            raise ToolError(str(answer["error"]))
        self._span(f"tool:{name}", begin, "ok", shown)
        return str(answer.get("text", ""))

    def hosted_tool(self, name: str, arguments: dict[str, Any], begin: float) -> str:
        """`context.tool("browser" | "compose", ...)`: answered by the gateway, which holds
        the one browser and the stacks; each step it took becomes a span of this call."""
        from gateway.tools.base import ToolError, ToolRefused

        if self.gateway is None:
            self._span(f"tool:{name}", begin, "error", "no line to the gateway")
            raise ToolError(f"{name}: this tool needs the gateway (this host has no line to it)")
        answer = self.gateway({"op": "tool", "tool": name, "arguments": arguments})
        base = (begin - self.started) * 1000
        for inner in answer.get("spans") or []:
            self.spans.append({"step": str(inner.get("step")),
                               "start_ms": base + float(inner.get("offset_ms") or 0),
                               "duration_ms": float(inner.get("duration_ms") or 0),
                               "outcome": str(inner.get("outcome")),
                               "detail": redact(str(inner.get("detail") or ""))[:300]})
        if "error" in answer:
            refused = answer.get("code") == "refused"
            self._span(f"tool:{name}", begin, "refused" if refused else "error",
                       redact(str(answer["error"])))
            raise (ToolRefused if refused else ToolError)(str(answer["error"]))
        self._span(f"tool:{name}", begin, "ok", redact_arguments(arguments))
        return str(answer.get("text", ""))

    def ask(self, prompt: str | list[dict[str, str]]) -> str:
        begin = time.perf_counter()
        pool = self.pools.get(self.chat_model or "")
        if pool is None:
            raise RuntimeError("no model configured under models: in config.yaml")
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        try:
            result = pool.chat(messages)
        except Exception as e:
            self._span("skill:model", begin, "error", redact(str(e)))
            raise
        self._span("skill:model", begin, "ok", f"via {redact(result.endpoint)}")
        return result.text


    def send(self, channel: str, chat: str, text: str, to: str | None,
             files: list[str]) -> str:
        """Ask the gateway to store the message in its outbox; its id, or SendError."""
        begin = time.perf_counter()
        if self.gateway is None:
            raise SendError("context.send needs the gateway (this host has no line to it)")
        answer = self.gateway({"op": "send", "channel": channel, "chat": chat, "text": text,
                               "to": to or "", "files": [str(f) for f in files]})
        if "error" in answer:
            self._span(f"send:{channel}", begin, "refused", str(answer["error"]))
            raise SendError(str(answer["error"]))
        self._span(f"send:{channel}", begin, "ok",
                   f"outbound {answer['id']} to {chat}: {answer.get('state', 'queued')}")
        return str(answer["id"])


KEPT_GENERATIONS = 2


class Host:
    def __init__(self, gateway: AskGateway | None = None) -> None:
        self.generations: dict[int, dict[tuple[str, str], SkillHandler]] = {}
        self.runtime: HostRuntime | None = None
        self.gateway = gateway

    def load(self, request: dict[str, Any]) -> dict[str, Any]:
        workspace = Path(request["workspace"])
        os.environ["MOLTBOT_HOME"] = str(workspace)
        self.runtime = HostRuntime(workspace, request.get("config") or {}, self.gateway)
        context.runtime = self.runtime
        skills: dict[str, list[dict[str, Any]]] = {}
        schedules: dict[str, list[dict[str, Any]]] = {}
        errors: dict[str, str] = {}
        handlers: dict[tuple[str, str], SkillHandler] = {}
        for label, text in request["files"].items():
            try:
                found, scheduled = load_python_source(text, workspace / label, label)
            except SkillLoadError as e:
                errors[label] = e.problem
                continue
            skills[label] = [asdict(h.spec) for h in found]
            schedules[label] = [{"intent": h.intent, **asdict(when)} for h, when in scheduled]
            handlers.update({(label, h.intent): h for h in found})
            handlers.update({(label, h.intent): h for h, _ in scheduled})
        self.generations[int(request.get("generation", 0))] = handlers
        for old in sorted(self.generations)[:-KEPT_GENERATIONS]:
            del self.generations[old]
        return {"skills": skills, "schedules": schedules, "errors": errors}

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        wanted = int(request.get("generation", 0))
        handlers = self.generations.get(wanted) or \
            (self.generations[max(self.generations)] if self.generations else {})
        handler = handlers.get((request["source"], request["intent"]))
        if handler is None:
            return {"error": f"skill {request['intent']} is not loaded", "spans": []}
        if self.runtime is not None:
            self.runtime.spans, self.runtime.started = [], time.perf_counter()
        try:
            result: Any = handler.call(request["msg"])  # whatever the owner's handler returns
        except Exception as e:
            return {"error": f"{type(e).__name__}: {e}"[:500], "spans": self._spans(),
                    "traceback": traceback.format_exc()[-4000:]}
        files: Any = []
        if isinstance(result, dict) and ("reply" in result or "files" in result):
            result, files = result.get("reply"), result.get("files") or []
        if not isinstance(files, list | tuple) or not all(isinstance(f, str | os.PathLike)
                                                          for f in files):
            return {"error": f'"files" must be a list of paths, got {files!r:.200}',
                    "spans": self._spans()}
        return {"reply": None if result is None else str(result),
                "files": [os.fspath(f) for f in files], "spans": self._spans()}

    def _spans(self) -> list[dict[str, Any]]:
        return list(self.runtime.spans) if self.runtime else []


def line_to(protocol: IO[str], answers: IO[str]) -> AskGateway:
    """A question to the gateway in the middle of a call: one line out, one line back."""

    def ask(question: dict[str, Any]) -> dict[str, Any]:
        protocol.write(json.dumps(question, ensure_ascii=False, default=str) + "\n")
        line = answers.readline()
        if not line:
            raise SendError("the gateway closed the line")
        answer: dict[str, Any] = json.loads(line)
        return answer

    return ask


def main() -> None:
    # The protocol keeps its own copies of the pipes; descriptors 0 and 1 become /dev/null and
    # stderr, so neither a skill's print() nor a program it starts (the guide's
    # `subprocess.run(["python", "skills/doc_parser.py", ...])` inherits them) can write into
    # the replies or read the next request.
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 (for the host's life)
    sys.stdout = sys.stderr
    host = Host(line_to(protocol, requests))
    for line in requests:
        try:
            request = json.loads(line)
            answer = host.load(request) if request.get("op") == "load" else host.call(request)
        except Exception as e:  # a bad request must not end the host
            traceback.print_exc(file=sys.stderr)
            answer = {"error": f"host: {type(e).__name__}: {e}"}
        protocol.write(json.dumps(answer, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
