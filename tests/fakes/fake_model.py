"""A fake model server that speaks the Ollama and OpenAI-compatible HTTP APIs.

Why: Moltbot must be tested with its *real* client libraries (``ollama`` and
``openai``) over real HTTP, without a GPU, a network or model weights.  This
server answers on 127.0.0.1 exactly as the platforms document it (NDJSON for
Ollama, server-sent events for OpenAI), deterministically, and lets a test
inject the failures a real server shows: slowness, errors, hangs, death.

In-process (tests)::

    with FakeModelServer() as srv:
        srv.reply_when(contains="weather", reply="sunny")
        ollama.Client(host=srv.url).chat(model="m", messages=[...])

As a separate process (benchmarks)::

    python -m tests.fakes.fake_model --port 11500 --fast   # prints "READY http://127.0.0.1:11500"

The module never patches anything on import; only the ``--fast`` command line
path monkey-patches the stdlib with gevent.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import re
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["DEFAULT_MODEL", "FakeModelServer", "Reply", "Rule", "main", "model_card"]

DEFAULT_MODEL = "fake-model"
"""Model listed by /api/tags and /v1/models when ``known_models`` is None."""

OLLAMA_VERSION = "0.6.3"
"""Version reported by GET /api/version."""

FAST_REPLY_CHARS = 64
"""The --fast server cuts its echo to this many characters: benchmarks want short replies."""

_WORDS = re.compile(r"\S+\s*|\s+")  # splits text into pieces that join back to it exactly


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class Reply:
    """What the fake model answers: text, or tool calls ``(name, arguments)``."""

    text: str = ""
    tool_calls: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    truncated: bool = False  # cut by num_predict / max_tokens

    @property
    def finish_reason(self) -> str:
        """OpenAI ``finish_reason``: tool calls, cut by a token limit, or a natural stop."""
        if self.tool_calls:
            return "tool_calls"
        return "length" if self.truncated else "stop"

    @property
    def tokens(self) -> int:
        """Completion size; words stand in for tokens so counts are predictable."""
        if self.tool_calls:
            return sum(len(json.dumps(args).split()) for _, args in self.tool_calls)
        return len(self.text.split())


@dataclass
class Rule:
    """A scripted answer.  The first rule that matches a chat request wins.

    A rule matches when the request's *last* message has role ``role`` and its
    text contains ``contains`` (case-insensitive; "" matches anything).  Matching
    only the last message keeps a tool-call rule from firing again once the tool
    has answered (that last message has role "tool").  A rule that calls tools
    only fires when the request offers every one of those tools by name, as a
    real model can only call tools it was given.
    """

    contains: str = ""
    reply: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    role: str = "user"

    def answer(self, role: str, text: str, offered: set[str]) -> Reply | None:
        """The reply this rule gives to that last message, or None if it does not match."""
        if role != self.role or self.contains.lower() not in text.lower():
            return None
        if self.tool_calls:
            if not all(name in offered for name, _ in self.tool_calls):
                return None
            return Reply(tool_calls=tuple((n, dict(a)) for n, a in self.tool_calls))
        return Reply(text=self.reply)


def _text_of(content: Any) -> str:
    """Message text; OpenAI also allows a list of parts like ``{"type": "text", "text": ...}``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    msgs = body.get("messages")
    return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []


def default_reply(messages: list[dict[str, Any]]) -> Reply:
    """The unscripted answer: echo the last user message, or report what a tool said."""
    if messages and messages[-1].get("role") == "tool":
        return Reply(text="tool said: " + _text_of(messages[-1].get("content")))
    users = [m for m in messages if m.get("role") == "user"]
    return Reply(text="echo: " + (_text_of(users[-1].get("content")) if users else ""))


def _offered_tools(body: Mapping[str, Any]) -> set[str]:
    """Tool names in ``tools``; both APIs use ``{"type": "function", "function": {"name"}}``."""
    names = set()
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            names.add(str(tool["function"].get("name")))
    return names


def _limit(reply: Reply, limit: int | None) -> Reply:
    """Cut a text reply to ``limit`` words, as num_predict / max_tokens cut a real one."""
    words = re.findall(r"\s*\S+", reply.text)
    if reply.tool_calls or limit is None or limit <= 0 or len(words) <= limit:
        return reply
    return Reply(text="".join(words[:limit]), truncated=True)


def _split(text: str, pieces: int) -> list[str]:
    """Cut ``text`` into about ``pieces`` parts at word boundaries (characters if too few words)."""
    if not text:
        return []
    units = _WORDS.findall(text)
    if len(units) < pieces:
        units = list(text)
    n = max(1, min(pieces, len(units)))
    size, extra = divmod(len(units), n)
    out, start = [], 0
    for k in range(n):
        end = start + size + (1 if k < extra else 0)
        out.append("".join(units[start:end]))
        start = end
    return out


def _prompt_tokens(body: Mapping[str, Any]) -> int:
    return sum(len(_text_of(m.get("content")).split()) for m in _messages(body))


def _canonical(model: str) -> str:
    """Ollama treats ``name`` and ``name:latest`` as the same model."""
    return model if ":" in model else model + ":latest"


# --------------------------------------------------------------------------- wire formats


class _OllamaApi:
    """Ollama's native /api/chat: NDJSON stream by default, arguments as objects."""

    stream_default = True
    stream_type = "application/x-ndjson"

    @staticmethod
    def limit(body: Mapping[str, Any]) -> int | None:
        options = body.get("options")
        n = options.get("num_predict") if isinstance(options, dict) else None
        return n if isinstance(n, int) else None

    @staticmethod
    def error(message: str, status: int) -> dict[str, Any]:
        return {"error": message}

    @staticmethod
    def _head(body: Mapping[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return {"model": body.get("model", ""), "created_at": now}

    @staticmethod
    def _stats(body: Mapping[str, Any], reply: Reply) -> dict[str, Any]:
        prompt, evals = _prompt_tokens(body), reply.tokens
        ms = 1_000_000  # durations are in nanoseconds; 1 ms per token keeps them plausible
        return {
            "done_reason": "length" if reply.truncated else "stop",
            "total_duration": (1 + prompt + evals) * ms,
            "load_duration": ms,
            "prompt_eval_count": prompt,
            "prompt_eval_duration": prompt * ms,
            "eval_count": evals,
            "eval_duration": evals * ms,
        }

    @staticmethod
    def _message(content: str, reply: Reply | None = None) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        if reply is not None and reply.tool_calls:
            msg["tool_calls"] = [
                {"function": {"name": name, "arguments": dict(args)}}
                for name, args in reply.tool_calls
            ]
        return msg

    def full(self, body: Mapping[str, Any], reply: Reply, seq: int) -> dict[str, Any]:
        return {
            **self._head(body),
            "message": self._message(reply.text, reply),
            "done": True,
            **self._stats(body, reply),
        }

    def frames(
        self, body: Mapping[str, Any], reply: Reply, seq: int, pieces: int
    ) -> Iterator[bytes]:
        for piece in _split(reply.text, pieces):
            yield _ndjson({**self._head(body), "message": self._message(piece), "done": False})
        if reply.tool_calls:
            yield _ndjson({**self._head(body), "message": self._message("", reply), "done": False})
        last = {**self._head(body), "message": self._message(""), "done": True}
        yield _ndjson({**last, **self._stats(body, reply)})


class _OpenAIApi:
    """OpenAI /v1/chat/completions: JSON by default, SSE chunks when streaming."""

    stream_default = False
    stream_type = "text/event-stream"

    @staticmethod
    def limit(body: Mapping[str, Any]) -> int | None:
        n = body.get("max_completion_tokens", body.get("max_tokens"))
        return n if isinstance(n, int) else None

    @staticmethod
    def error(message: str, status: int) -> dict[str, Any]:
        kind = {401: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_error"}
        return {
            "error": {
                "message": message,
                "type": kind.get(status, "server_error" if status >= 500 else "api_error"),
                "param": None,
                "code": None,
            }
        }

    @staticmethod
    def _usage(body: Mapping[str, Any], reply: Reply) -> dict[str, int]:
        prompt = _prompt_tokens(body)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": reply.tokens,
            "total_tokens": prompt + reply.tokens,
        }

    @staticmethod
    def _calls(reply: Reply, seq: int) -> list[dict[str, Any]]:
        return [
            {
                "id": f"call_{seq}_{i}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for i, (name, args) in enumerate(reply.tool_calls)
        ]

    @staticmethod
    def _head(body: Mapping[str, Any], seq: int, obj: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{seq}",
            "object": obj,
            "created": int(time.time()),
            "model": body.get("model", ""),
            "system_fingerprint": "fp_fake",
        }

    def full(self, body: Mapping[str, Any], reply: Reply, seq: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = self._calls(reply, seq)
        finish = reply.finish_reason
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return {
            **self._head(body, seq, "chat.completion"),
            "choices": [choice],
            "usage": self._usage(body, reply),
        }

    def frames(
        self, body: Mapping[str, Any], reply: Reply, seq: int, pieces: int
    ) -> Iterator[bytes]:
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        head = self._head(body, seq, "chat.completion.chunk")

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            extra = {"usage": None} if with_usage else {}
            return _sse({**head, "choices": [choice], **extra})

        if reply.tool_calls:
            for i, call in enumerate(self._calls(reply, seq)):
                opening = {**call, "index": i, "function": {**call["function"], "arguments": ""}}
                yield chunk({"role": "assistant", "content": None, "tool_calls": [opening]})
                for part in _split(call["function"]["arguments"], pieces):
                    yield chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]})
        else:
            yield chunk({"role": "assistant", "content": ""})
            for piece in _split(reply.text, pieces):
                yield chunk({"content": piece})
        yield chunk({}, reply.finish_reason)
        if with_usage:
            yield _sse({**head, "choices": [], "usage": self._usage(body, reply)})
        yield b"data: [DONE]\n\n"


def _ndjson(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


OLLAMA = _OllamaApi()
OPENAI = _OpenAIApi()


def _api_for(path: str) -> _OllamaApi | _OpenAIApi:
    return OPENAI if path.startswith("/v1/") else OLLAMA


def _tags(models: Iterable[str]) -> dict[str, Any]:
    listed = []
    for name in models:
        details = {"format": "gguf", "family": "fake", "parameter_size": "1B"}
        listed.append(
            {
                "name": _canonical(name),
                "model": _canonical(name),
                "modified_at": "2024-01-01T00:00:00Z",
                "size": 1,
                "digest": "0" * 64,
                "details": details,
            }
        )
    return {"models": listed}


def _model_list(models: Iterable[str]) -> dict[str, Any]:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "library"} for m in models]
    return {"object": "list", "data": data}


DEFAULT_CONTEXT = 32768
"""The context length /api/show reports for a model without a card of its own."""


def model_card(context_length: int = DEFAULT_CONTEXT, tools: bool = True,
               num_ctx: int | None = None, capabilities: bool = True) -> dict[str, Any]:
    """An /api/show answer as Ollama 0.6.4+ gives it: ``model_info`` with the architecture's
    ``context_length``, ``capabilities`` (left out with ``capabilities=False``, as older
    Ollama does) and the Modelfile ``parameters`` (``num_ctx`` when given)."""
    card: dict[str, Any] = {
        "modelfile": "FROM fake", "template": "{{ .Prompt }}",
        "parameters": f"num_ctx                        {num_ctx}" if num_ctx else "",
        "details": {"format": "gguf", "family": "fake", "parameter_size": "1B"},
        "model_info": {"general.architecture": "fake", "fake.context_length": context_length},
    }
    if capabilities:
        card["capabilities"] = ["completion", "tools"] if tools else ["completion"]
    return card


CHAT_PATHS: dict[str, _OllamaApi | _OpenAIApi] = {
    "/api/chat": OLLAMA,
    "/v1/chat/completions": OPENAI,
}


# --------------------------------------------------------------------------- embeddings


# Deterministic embeddings for search by meaning (/api/embed, /v1/embeddings). A real model
# puts paraphrases near each other; this fake does it with a small thesaurus: every form of a
# concept below (English words and phrases, Chinese words) adds 1 to that concept's own
# dimension, and any other word (or Han character) adds EMBED_OTHER to one of EMBED_HASHED
# dimensions chosen by its hash. So "launch the service" and "How do I start the gateway?"
# share the concept `start` and are close (cosine ~0.6), unrelated texts share only hashed
# noise (~0-0.2), and texts with no concept at all still differ. The table is the same
# vocabulary bench/fixtures/meaning/questions.txt asks about: the numbers it gives measure
# the gateway's plumbing (fusion, the grounding gate, rebuilds), not a real model's quality.
EMBED_CONCEPTS: tuple[tuple[str, ...], ...] = (
    ("install", "installation", "set up", "setup", "安装", "部署", "装上"),
    ("start", "launch", "boot", "启动", "跑起来", "运行起来", "开启"),
    ("stop", "shut down", "shutdown", "turn off", "off", "halt", "停止", "关掉", "关闭", "停掉"),
    ("port", "listen", "监听", "端口"),
    ("log", "log files", "logfile", "日志", "运行记录"),
    ("sign in", "sign-in", "log in", "login", "登录", "登陆"),
    ("chat page", "web chat", "聊天页面", "网页版聊天", "网页聊天"),
    ("token", "credential", "令牌", "凭证"),
    ("expire", "lifetime", "validity", "过期", "失效", "有效期"),
    ("skill", "plugin", "技能", "插件"),
    ("add", "create", "write", "添加", "新增", "写一个"),
    ("fail", "broken", "error", "ignored", "not load", "失败", "报错", "出错", "不生效"),
    ("ollama", "llama", "本地模型"),
    ("connect", "hook up", "plug in", "连接", "接入"),
    ("openai-compatible", "openai", "vllm", "llama.cpp", "兼容"),
    ("api key", "password", "secret", "密钥", "密码"),
    ("safely", "securely", "out of the config", "keyring", "安全", "明文"),
    ("doctor", "diagnose", "diagnostic", "诊断", "自检"),
    ("check", "verify", "inspect", "检查", "检测"),
    ("back up", "backup", "save a copy", "备份", "拷贝"),
    ("conversation", "chat history", "session", "对话", "会话", "聊天记录"),
    ("reset", "start over", "begin fresh", "clear", "重新开始", "重新聊", "清空", "重置"),
    ("timeout", "idle", "silence", "by itself", "超时", "闲置", "自动结束"),
    ("history", "previous messages", "turns", "历史", "前面几轮", "几轮"),
    ("knowledge", "documents", "notes", "知识库", "文档", "资料"),
    ("trace", "debug", "why a message", "what happened", "排查", "追踪", "处理过程", "经历"),
    ("change", "switch", "更换", "切换"),
    ("model", "llm", "模型", "大模型"),
    ("down", "crashed", "crash", "unavailable", "宕机", "挂了", "崩溃"),
    ("shell command", "commands", "pandoc", "executable", "执行命令"),
    ("web", "web pages", "fetch", "browse the internet", "internet", "网页", "上网", "联网"),
    ("limit", "cap", "maximum", "限制", "最多", "上限"),
    ("people", "users", "connections", "多少人", "连接数", "同时用"),
    ("remote", "another computer", "phone", "lan", "别的电脑", "手机", "局域网", "远程"),
    ("update", "upgrade", "latest version", "升级", "更新", "新版本"),
    ("uninstall", "remove", "delete", "卸载", "删除"),
    ("websocket", "streaming", "frames", "流式", "帧"),
    ("slow", "take so long", "faster", "慢", "等很久"),
    ("chinese", "mandarin", "中文", "汉语"),
    ("english", "英文", "英语"),
    ("answer", "reply", "respond", "回答", "回复"),
)
EMBED_HASHED = 256
EMBED_OTHER = 0.15
EMBED_DIMENSIONS = len(EMBED_CONCEPTS) + EMBED_HASHED
_EMBED_FORMS = {form.replace("-", " "): n for n, forms in enumerate(EMBED_CONCEPTS)
                for form in forms}
_EMBED_LONGEST = max(len(form.split()) if form.isascii() else len(form) for form in _EMBED_FORMS)
_EMBED_RUNS = re.compile(r"([a-z0-9]+(?:\.[a-z0-9]+)*)|([\u4e00-\u9fff]+)")
_EMBED_SKIP = frozenset({
    "a", "an", "the", "and", "or", "of", "to", "in", "on", "at", "by", "for", "with", "is",
    "are", "do", "does", "how", "what", "which", "where", "when", "why", "can", "i", "my", "it",
    "me", "you", "your", "this", "that", "的", "了", "吗", "呢", "么", "怎", "我", "是", "在",
    "把", "让", "什", "哪"})


def _embed_concept(piece: str) -> int | None:
    """The concept of a word group or Han string, trying English plural and tense endings."""
    for form in (piece, piece[:-1], piece[:-2], piece[:-3]) if piece.isascii() else (piece,):
        if form in _EMBED_FORMS:
            return _EMBED_FORMS[form]
    return None


def _embed_units(text: str) -> Iterator[tuple[int | None, str]]:
    """(concept or None, piece): longest thesaurus matches first, over English words (a
    phrase is up to a few words) and Han characters alike; the rest word by word."""
    units: list[str] = []
    for word, han in _EMBED_RUNS.findall(text.lower()):
        units.extend([word] if word else list(han))
    at = 0
    while at < len(units):
        for size in range(min(_EMBED_LONGEST, len(units) - at), 0, -1):
            ascii_ = all(u.isascii() for u in units[at:at + size])
            piece = (" " if ascii_ else "").join(units[at:at + size])
            concept = _embed_concept(piece)
            if concept is not None:
                yield concept, piece
                break
        else:
            yield None, units[at]
            size = 1
        at += size


def fake_embedding(text: str) -> list[float]:
    """The fake's vector for ``text`` (see EMBED_CONCEPTS); not normalised, as Ollama's are."""
    vector = [0.0] * EMBED_DIMENSIONS
    for concept, piece in _embed_units(text):
        if concept is not None:
            vector[concept] += 1.0
        elif piece not in _EMBED_SKIP:
            digest = int.from_bytes(hashlib.blake2b(piece.encode(), digest_size=4).digest(), "big")
            vector[len(EMBED_CONCEPTS) + digest % EMBED_HASHED] += EMBED_OTHER
    return vector


def _embed_inputs(body: Mapping[str, Any]) -> list[str] | None:
    """``input`` as a list of strings (both APIs accept one string or a list), else None."""
    given = body.get("input")
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return None
    return texts


def _embed_answer(path: str, model: str, texts: list[str]) -> dict[str, Any]:
    vectors = [fake_embedding(t) for t in texts]
    if path == "/api/embed":
        return {"model": model, "embeddings": vectors, "total_duration": 1_000_000,
                "load_duration": 0, "prompt_eval_count": sum(len(t.split()) for t in texts)}
    used = sum(len(t.split()) for t in texts)
    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": v}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": used, "total_tokens": used}}


EMBED_PATHS = frozenset({"/api/embed", "/v1/embeddings"})


# --------------------------------------------------------------------------- threaded server


class _Httpd(ThreadingHTTPServer):
    """One run of the server: its listener, its open connections, its stop flag."""

    daemon_threads = True
    block_on_close = False  # stop() shuts connections itself, then joins with a bound
    allow_reuse_address = True  # restart on the same port despite TIME_WAIT
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], fake: FakeModelServer) -> None:
        self.fake = fake
        self.stopping = threading.Event()
        self.conn_lock = threading.Lock()
        self.conns: dict[socket.socket, threading.Thread] = {}
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that can stall.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a vanished client is not an error
            super().handle_error(request, client_address)

    def track(self, conn: socket.socket) -> None:
        with self.conn_lock:
            if not self.stopping.is_set():
                self.conns[conn] = threading.current_thread()
                return
        _shut(conn)  # arrived while stopping: hang up at once

    def untrack(self, conn: socket.socket) -> None:
        with self.conn_lock:
            self.conns.pop(conn, None)

    def hang_up_all(self) -> list[threading.Thread]:
        """Close every client connection (wakes handlers blocked on them)."""
        with self.conn_lock:
            self.stopping.set()
            conns = dict(self.conns)
        for conn in conns:
            _shut(conn)
        return list(conns.values())


def _shut(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """Serves one connection: keep-alive, Content-Length or chunked bodies, and the knobs."""

    protocol_version = "HTTP/1.1"
    server: _Httpd

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        self.server.untrack(self.connection)
        super().finish()

    def log_message(self, *args: Any) -> None:
        """Silence per-request logging: pytest output should show test failures only."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    # -- request flow

    def _serve(self) -> None:
        fake = self.server.fake
        path = urlsplit(self.path).path
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if (self.command, path) == ("POST", "/api/show"):
            return self._show(body)
        seq = fake._record(self.command, path, dict(self.headers.items()), body)
        if fake.hang and not self._hold():
            return
        api = _api_for(path)
        status = fake._take_failure()
        if status is not None:
            return self._json(status, api.error(f"injected failure (HTTP {status})", status))
        key = fake.api_key
        if key is not None and path != "/" and self.headers.get("Authorization") != f"Bearer {key}":
            message = "Incorrect API key provided" if api is OPENAI else "unauthorized"
            return self._json(401, api.error(message, 401))
        route = (self.command, path)
        if route in {("GET", "/"), ("HEAD", "/")}:
            return self._send(200, "text/plain; charset=utf-8", b"Ollama is running")
        if route == ("GET", "/api/version"):
            return self._json(200, {"version": OLLAMA_VERSION})
        if route == ("GET", "/api/tags"):
            return self._json(200, _tags(fake._listed_models()))
        if route == ("GET", "/v1/models"):
            return self._json(200, _model_list(fake._listed_models()))
        if self.command == "POST" and path in CHAT_PATHS:
            return self._chat(CHAT_PATHS[path], body, seq)
        if self.command == "POST" and path in EMBED_PATHS:
            return self._embed(path, api, body)
        return self._json(404, api.error(f"404 page not found: {self.command} {path}", 404))

    def _show(self, body: Any) -> None:
        """A model card, kept out of ``requests`` and the failure knobs: the gateway reads it
        once per model and endpoint, and tests count and fail the chat calls."""
        fake = self.server.fake
        model = str(body.get("model", "")) if isinstance(body, dict) else ""
        with fake._changed:
            fake.shows.append(model)
            fake._changed.notify_all()
        while fake.hang_show:  # an answer that does not come, until the knob is cleared
            if self._peer_gone(0.02):
                return self._abandon()
        if fake.show_status is not None:
            return self._json(fake.show_status, {"error": "injected /api/show failure"})
        if not fake._knows(model):
            return self._json(404, {"error": f"model '{model}' not found"})
        return self._json(200, fake._card(model))

    def _chat(self, api: _OllamaApi | _OpenAIApi, body: Any, seq: int) -> None:
        fake = self.server.fake
        if not isinstance(body, dict):
            return self._json(400, api.error("invalid JSON request body", 400))
        model = str(body.get("model", ""))
        if not fake._knows(model):
            return self._json(404, api.error(f"model '{model}' not found", 404))
        if body.get("tools") and "tools" not in fake._card(model).get("capabilities", ["tools"]):
            return self._json(400, api.error(f"{model} does not support tools", 400))
        reply = _limit(fake._decide(body), api.limit(body))
        if not self._pause(fake.delay_first):
            return
        if not body.get("stream", api.stream_default):
            return self._json(200, api.full(body, reply, seq))
        self._stream(api.stream_type, api.frames(body, reply, seq, fake.chunks))

    def _embed(self, path: str, api: _OllamaApi | _OpenAIApi, body: Any) -> None:
        fake = self.server.fake
        texts = _embed_inputs(body) if isinstance(body, dict) else None
        if texts is None:
            return self._json(400, api.error("input must be a string or a list of strings", 400))
        model = str(body.get("model", ""))
        if not fake._knows(model):
            return self._json(404, api.error(f"model '{model}' not found", 404))
        if not self._pause(fake.delay_first):
            return
        self._json(200, _embed_answer(path, model, texts))

    # -- waiting, watching the peer

    def _peer_gone(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the client to hang up (or the server to stop)."""
        if self.server.stopping.is_set():
            return True
        readable, _, _ = select.select([self.connection], [], [], max(0.0, timeout))
        if not readable:
            return False
        try:
            data = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True
        if data:  # pipelined bytes, not a hang-up: we can no longer watch the socket
            return self.server.stopping.wait(timeout)
        return True

    def _abandon(self) -> None:
        """The answer will never be complete: drop the connection, count a client hang-up."""
        self.close_connection = True
        if not self.server.stopping.is_set():
            self.server.fake._count_disconnect()

    def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the client leaves first; False if it left."""
        deadline = time.monotonic() + seconds
        while True:
            if self._peer_gone(min(deadline - time.monotonic(), 0.05)):
                self._abandon()
                return False
            if time.monotonic() >= deadline:
                return True

    def _hold(self) -> bool:
        """``hang``: leave the request unanswered until hang is cleared; False if never."""
        while self.server.fake.hang:
            if self._peer_gone(0.02):
                self._abandon()
                return False
        return True

    # -- bodies

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except OSError:
            self._abandon()

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, "application/json; charset=utf-8", json.dumps(obj).encode())

    def _stream(self, content_type: str, frames: Iterator[bytes]) -> None:
        delay = self.server.fake.delay_chunk
        try:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            for i, frame in enumerate(frames):
                if i and not self._pause(delay):
                    return
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self._abandon()


class FakeModelServer:
    """Ollama + OpenAI-compatible model server on 127.0.0.1, in daemon threads.

    Knobs (plain attributes, safe to assign from the test thread while serving;
    each request reads them when it needs them):

    - ``delay_first``: seconds before the first byte of a chat or embeddings answer.
    - ``delay_chunk``: seconds between streamed frames.
    - ``chunks``: how many pieces a streamed text reply is cut into.
    - ``fail_status``: answer every request with this HTTP status and a JSON error;
      ``fail_times`` limits that to the next N requests (then back to normal).
    - ``hang``: read requests but never answer them until hang is cleared or stop().
    - ``api_key``: require ``Authorization: Bearer <key>`` (except on GET /).
    - ``known_models``: if set, other models get 404 ``model 'x' not found``.

    - ``cards`` (set with ``card()``): what /api/show says per model; ``show_status``:
      answer /api/show with this HTTP status instead; ``hang_show``: do not answer it yet.
      A chat request that offers tools to a model whose card lacks "tools" gets HTTP 400,
      as from Ollama.

    Observations: ``requests`` (every request but /api/show, in order), ``calls``,
    ``disconnects``, ``shows`` (each /api/show's model), ``num_ctx`` (each chat's).
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port  # the real port once started, reused by a restart
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._httpd: _Httpd | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Forget requests, rules and counters and restore every knob (for shared fixtures)."""
        with self._lock:
            self.requests: list[dict[str, Any]] = []
            self.disconnects = 0
            self.rules: list[Rule] = []
            self.delay_first = 0.0
            self.delay_chunk = 0.0
            self.chunks = 3
            self.fail_status: int | None = None
            self.fail_times: int | None = None
            self.hang = False
            self.api_key: str | None = None
            self.known_models: set[str] | None = None
            self.cards: dict[str, dict[str, Any]] = {}  # model -> its /api/show answer
            self.show_status: int | None = None  # answer /api/show with this HTTP status
            self.hang_show = False  # leave /api/show unanswered until cleared
            self.shows: list[str] = []  # the model of each /api/show asked, in order

    # -- lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``; stays valid across stop()/start()."""
        if not self.port:
            raise RuntimeError("FakeModelServer has no port yet: call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> FakeModelServer:
        """Listen (on the same port as before, after a stop) and serve in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("FakeModelServer is already running")
        httpd = _Httpd((self.host, self.port), self)
        self.port = httpd.server_address[1]
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-model-{self.port}",
            daemon=True,
        )
        thread.start()
        self._httpd, self._thread = httpd, thread
        return self

    def stop(self) -> None:
        """Close the listener and every open connection; new connects are refused."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._httpd = self._thread = None
        httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        handlers = httpd.hang_up_all()
        thread.join()
        for handler in handlers:
            if handler is not threading.current_thread():
                handler.join(timeout=2)
        with self._changed:
            self._changed.notify_all()

    def die(self) -> None:
        """Simulate a crashed model server: same as stop()."""
        self.stop()

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting

    def script(self, rule: Rule) -> Rule:
        """Add a rule after the existing ones (first match wins) and return it."""
        with self._lock:
            self.rules.append(rule)
        return rule

    def reply_when(self, contains: str = "", reply: str = "", role: str = "user") -> Rule:
        """Answer ``reply`` when the last message (of ``role``) contains ``contains``."""
        return self.script(Rule(contains=contains, reply=reply, role=role))

    def tool_call_when(
        self,
        contains: str = "",
        name: str = "",
        arguments: Mapping[str, Any] | None = None,
        role: str = "user",
    ) -> Rule:
        """Call tool ``name`` with ``arguments`` when the last message contains ``contains``
        and the request offers that tool."""
        call = (name, dict(arguments or {}))
        return self.script(Rule(contains=contains, tool_calls=[call], role=role))

    def card(self, model: str, **card: Any) -> None:
        """What /api/show says about ``model`` (``model_card``'s arguments); a model without
        a card reports ``DEFAULT_CONTEXT`` tokens and tool support."""
        with self._lock:
            self.cards[_canonical(model)] = model_card(**card)

    # -- observing

    @property
    def num_ctx(self) -> list[int | None]:
        """The ``options.num_ctx`` of each Ollama chat request, in order (None: not sent)."""
        return [(r["body"].get("options") or {}).get("num_ctx") for r in self.requests
                if r["path"] == "/api/chat" and isinstance(r["body"], dict)]

    @property
    def calls(self) -> int:
        """Number of requests received (any path, including failed ones)."""
        return len(self.requests)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> bool:
        """Poll ``predicate`` until true or ``timeout``; wakes on each server event.

        Tests use this instead of sleeps, e.g. ``assert srv.wait_for(lambda: srv.disconnects)``.
        """
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bool(predicate())
            with self._changed:
                self._changed.wait(min(remaining, 0.01))
        return True

    # -- used by the handler threads

    def _record(self, method: str, path: str, headers: dict[str, str], body: Any) -> int:
        entry = {
            "method": method,
            "path": path,
            "headers": {k.lower(): v for k, v in headers.items()},
            "body": body,
        }
        with self._changed:
            self.requests.append(entry)
            self._changed.notify_all()
            return len(self.requests)

    def _count_disconnect(self) -> None:
        with self._changed:
            self.disconnects += 1
            self._changed.notify_all()

    def _take_failure(self) -> int | None:
        """The status to fail this request with, consuming one of ``fail_times``."""
        with self._lock:
            status, times = self.fail_status, self.fail_times
            if status is None:
                return None
            if times is not None:
                if times <= 0:
                    self.fail_status = self.fail_times = None
                    return None
                self.fail_times = times - 1
                if times == 1:
                    self.fail_status = self.fail_times = None
            return status

    def _card(self, model: str) -> dict[str, Any]:
        with self._lock:
            return self.cards.get(_canonical(model)) or model_card()

    def _listed_models(self) -> list[str]:
        known = self.known_models
        return sorted(known) if known is not None else [DEFAULT_MODEL]

    def _knows(self, model: str) -> bool:
        known = self.known_models
        return known is None or _canonical(model) in {_canonical(m) for m in known}

    def _decide(self, body: Mapping[str, Any]) -> Reply:
        messages = _messages(body)
        last = messages[-1] if messages else {}
        role, text = str(last.get("role", "")), _text_of(last.get("content"))
        offered = _offered_tools(body)
        with self._lock:
            rules = list(self.rules)
        for rule in rules:
            reply = rule.answer(role, text, offered)
            if reply is not None:
                return reply
        return default_reply(messages)


# --------------------------------------------------------------------------- fast (gevent) mode


def fast_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """WSGI app for benchmarks: no knobs, no recording, no delays, a short echo."""
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
    api = _api_for(path)

    def respond(status: str, obj: Any) -> list[bytes]:
        data = json.dumps(obj).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        start_response(status, headers)
        return [data]

    if method in ("GET", "HEAD") and path == "/":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "17")])
        return [b"Ollama is running"]
    if method == "GET" and path == "/api/version":
        return respond("200 OK", {"version": OLLAMA_VERSION})
    if method == "GET" and path == "/api/tags":
        return respond("200 OK", _tags([DEFAULT_MODEL]))
    if method == "GET" and path == "/v1/models":
        return respond("200 OK", _model_list([DEFAULT_MODEL]))
    if method == "POST" and path == "/api/show":
        return respond("200 OK", model_card())
    if method != "POST" or path not in CHAT_PATHS:
        return respond("404 Not Found", api.error(f"404 page not found: {method} {path}", 404))
    try:
        body = json.loads(environ["wsgi.input"].read() or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return respond("400 Bad Request", api.error("invalid JSON request body", 400))
    seq = next(_fast_seq)
    full = default_reply(_messages(body))
    reply = _limit(Reply(text=full.text[:FAST_REPLY_CHARS]), api.limit(body))
    if not body.get("stream", api.stream_default):
        return respond("200 OK", api.full(body, reply, seq))
    start_response("200 OK", [("Content-Type", api.stream_type)])
    # A generator (no Content-Length) makes pywsgi answer chunked, as the real servers do.
    return iter([b"".join(api.frames(body, reply, seq, 3))])


_fast_seq = itertools.count(1)


def serve_fast(host: str, port: int) -> None:
    """Serve ``fast_app`` with gevent; the caller must have monkey-patched first."""
    from gevent.pywsgi import WSGIServer

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
    listener.bind((host, port))
    listener.listen(4096)
    server = WSGIServer(listener, fast_app, log=None, error_log=None)
    print(f"READY http://{host}:{listener.getsockname()[1]}", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Command line: run the server until killed, after printing ``READY <url>``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="gevent server for benchmarks")
    args = parser.parse_args(argv)
    if args.fast:
        serve_fast(args.host, args.port)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so `finally` closes cleanly
    srv = FakeModelServer(port=args.port, host=args.host).start()
    print(f"READY {srv.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    if "--fast" in sys.argv[1:]:
        from gevent import monkey

        monkey.patch_all()
    sys.exit(main())
