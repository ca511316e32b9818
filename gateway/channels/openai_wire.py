"""The OpenAI chat-completions wire format, read and written: no I/O, no Flask.

`read_request` turns a request body into a `ChatRequest` (the conversation in the neutral chat
shape of `gateway.models.base.Provider`, the last user turn's text for the router) or says in a
sentence what to fix. Images (`image_url` parts with data: URLs) go with their user turn to a
model with `vision`. What the gateway cannot honour is refused by name, never dropped: a
second choice (`n`), JSON modes, log probabilities, the old `functions`, a forced
`tool_choice`, audio and file parts, images behind a URL or for a model without `vision`.
The sampling knobs (`max_tokens`, `temperature`, `top_p`, `stop`, `seed`, penalties) are the
model's own in config.yaml and are not applied.
The writers build OpenAI's bodies: a whole completion, the chunks of a stream (server-sent
events ending with `data: [DONE]`), `/v1/models`, and errors as `{"error": {"message",
"type", "code", "param"}}`.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.core.files_for_model import IMAGE_TYPES
from gateway.core.message import ClientContext

MAX_NAME = 256
ROLES = ("system", "developer", "user", "assistant", "tool")
TEXT_PARTS = ("text", "input_text")
_DATA_URL = re.compile(r"data:([\w/.+-]+);base64,([A-Za-z0-9+/=]*)")
REFUSED = {  # what a request may ask that this gateway does not do, and what to send instead
    "functions": '"functions" is the old form of "tools"; send "tools".',
    "function_call": '"function_call" is the old form of "tool_choice"; send "tool_choice".',
    "audio": "This gateway answers with text only; leave out \"audio\".",
    "prediction": "Predicted outputs are not supported; leave out \"prediction\".",
}
# OpenAI's error `type` for each status; the SDKs choose their exception by the status.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "invalid_request_error",
               413: "invalid_request_error", 429: "rate_limit_error"}


class RequestProblem(ValueError):
    """What is wrong with a request, in a sentence its author can act on; `code` is one of
    `message.ERROR_CODES` (`not_found` for a model that is not configured)."""

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ChatRequest:
    context: ClientContext  # the conversation, the chosen model and the client's tools
    text: str  # the last user message: what the router and the knowledge search read
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a usage chunk before [DONE]
    user: str = ""


def read_request(body: Any, models: Mapping[str, bool], default: str | None) -> ChatRequest:
    """The request as the gateway will answer it; raises RequestProblem. `models` are the
    configured models, each with whether it takes images (`models.<name>.vision`)."""
    if not isinstance(body, dict):
        raise RequestProblem('Send a JSON object such as {"model": "...", "messages": '
                             '[{"role": "user", "content": "hello"}]}.')
    try:  # a lone surrogate ("\ud800") is valid JSON, but no text that can be stored
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise RequestProblem("The request contains invalid Unicode (a lone surrogate such as "
                             "\\ud800); send UTF-8 text.") from None
    for key, why in REFUSED.items():
        if body.get(key) is not None:
            raise RequestProblem(why)
    _refuse_options(body)
    model = _model(body.get("model"), list(models), default)
    tools = _tools(body.get("tools"), body.get("tool_choice"))
    messages = _messages(body.get("messages"), model, models[model])
    users = [m for m in messages if m["role"] == "user"]
    # LibreChat asks for a title with one system message: then the last message is the text
    last = (users or messages)[-1]
    images = len(last.get("images") or [])
    text = str(last.get("content") or "").strip() or (
        f"[{images} image{'s' if images > 1 else ''}]" if images else "")
    if not text:
        raise RequestProblem("The last user message has no text; send some.")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise RequestProblem('"stream" must be true or false.')
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise RequestProblem('"stream_options" must be an object such as '
                             '{"include_usage": true}.')
    return ChatRequest(ClientContext(tuple(messages), model, tools), text, bool(stream),
                       bool((options or {}).get("include_usage")), _user(body.get("user")))


def _refuse_options(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise RequestProblem('This gateway answers with one choice; send "n": 1 or leave '
                             "it out.")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise RequestProblem("Log probabilities are not available here; leave out "
                             '"logprobs".')
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise RequestProblem('JSON modes are not supported: "response_format" may only be '
                             '{"type": "text"}; ask for JSON in the message instead.')
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise RequestProblem('This gateway answers with text only: "modalities" may only be '
                             '["text"].')


def _model(given: Any, models: list[str], default: str | None) -> str:
    if given is None or given == "":
        if default is None:
            raise RequestProblem("No model is configured: add one under models: in "
                                 "config.yaml (see the README).", "not_found")
        return default
    if not isinstance(given, str) or given not in models:
        listed = ", ".join(models) or "none"
        raise RequestProblem(f"The model {given!r} does not exist here; the configured "
                             f"models are: {listed} (GET /v1/models).", "not_found")
    return given


def _user(user: Any) -> str:
    """`user` keys the session; Open WebUI sends an object with an `id` to pipelines."""
    if isinstance(user, dict):
        user = user.get("id")
    if user is None or user == "":
        return ""
    if not isinstance(user, str) or len(user) > MAX_NAME:
        raise RequestProblem(f'"user" must be a string of at most {MAX_NAME} characters.')
    return user


def _tools(tools: Any, choice: Any) -> tuple[dict[str, Any], ...]:
    if choice not in (None, "auto", "none"):
        raise RequestProblem('"tool_choice" may be "auto" or "none" here: the models behind '
                             "this gateway cannot be made to call a tool.")
    if tools is None or tools == [] or choice == "none":
        return ()
    shape = ('"tools" must be a list of {"type": "function", "function": {"name": "...", '
             '"description": "...", "parameters": {...}}}.')
    if not isinstance(tools, list):
        raise RequestProblem(shape)
    read: list[dict[str, Any]] = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type") != "function":
            raise RequestProblem(shape)
        name = function.get("name")
        if not isinstance(name, str) or not name or len(name) > 64:
            raise RequestProblem("Each tool needs a \"name\" of 1 to 64 characters.")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise RequestProblem(f'The "parameters" of tool {name!r} must be a JSON schema '
                                 "object.")
        read.append({"type": "function", "function": {
            "name": name, "description": str(function.get("description") or ""),
            "parameters": parameters}})
    names = [t["function"]["name"] for t in read]
    if len(set(names)) < len(names):
        raise RequestProblem("Two tools have the same name; give each its own.")
    return tuple(read)


def _messages(given: Any, model: str, vision: bool) -> list[dict[str, Any]]:
    """The conversation in the neutral shape, for `model` (`vision`: it takes images)."""
    if not isinstance(given, list) or not given:
        raise RequestProblem('"messages" must be a non-empty list such as '
                             '[{"role": "user", "content": "hello"}].')
    read: list[dict[str, Any]] = []
    calls: dict[str, str] = {}  # tool_call_id -> the function's name, for the tool answers
    for i, m in enumerate(given):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ROLES:
            raise RequestProblem(f"messages[{i}] needs a role: one of {', '.join(ROLES)}.")
        assert isinstance(m, dict)
        content, images = _content(m.get("content"), i)
        if images and role != "user":
            raise RequestProblem(f"messages[{i}] has an image; only user messages may.")
        if images and not vision:
            raise RequestProblem(f"messages[{i}] has an image, and the model {model!r} cannot "
                                 f"see images (models.{model}.vision in config.yaml is for a "
                                 "model that can); choose one that can, or send text.")
        if role == "developer":  # the newer name for a system message
            role = "system"
        if role == "assistant" and m.get("tool_calls"):
            asked = [_call(c, i) for c in _listed(m["tool_calls"], i, "tool_calls")]
            calls.update((c["id"], c["name"]) for c in asked)
            read.append({"role": "assistant", "content": content, "tool_calls": asked})
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if call_id not in calls:
                raise RequestProblem(f"messages[{i}] answers tool_call_id {call_id!r}, "
                                     "which no earlier assistant message called.")
            read.append({"role": "tool", "tool_call_id": call_id, "name": calls[call_id],
                         "content": content})
        else:
            read.append({"role": role, "content": content} | ({"images": images}
                                                              if images else {}))
    return read


def _content(content: Any, i: int) -> tuple[str, list[dict[str, str]]]:
    """A message's text (a string, or its text parts joined) and its images (`image_url`
    parts with data: URLs, as `{"media_type", "data"}` base64). Other parts (audio, files) and
    images behind a URL are refused: the model here would never see them."""
    if content is None or isinstance(content, str):
        return content or "", []
    pieces: list[str] = []
    images: list[dict[str, str]] = []
    for part in _listed(content, i, "content"):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            images.append(_image(part.get("image_url"), i))
            continue
        if kind not in TEXT_PARTS and kind != "refusal":
            raise RequestProblem(f"messages[{i}] has a {kind!r} part; this gateway reads text "
                                 "and image parts only, so send the content as text.")
        value = part.get("text", part.get("refusal"))
        if not isinstance(value, str):
            raise RequestProblem(f'messages[{i}] has a text part without a "text" string.')
        pieces.append(value)
    return "\n".join(pieces), images


def _image(image: Any, i: int) -> dict[str, str]:
    url = image.get("url") if isinstance(image, dict) else image
    found = _DATA_URL.fullmatch(url) if isinstance(url, str) else None
    if found is None:
        raise RequestProblem(f"messages[{i}] has an image behind a URL; this gateway fetches "
                             "nothing, so send it as a data: URL (data:image/png;base64,...).")
    media_type, data = found.group(1).lower(), found.group(2)
    if media_type not in IMAGE_TYPES:
        raise RequestProblem(f"messages[{i}] has a {media_type} image; send PNG, JPEG, GIF "
                             "or WebP.")
    try:
        base64.b64decode(data, validate=True)
    except ValueError:
        raise RequestProblem(f"messages[{i}] has an image whose data is not base64.") from None
    return {"media_type": media_type, "data": data}


def _listed(value: Any, i: int, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise RequestProblem(f'messages[{i}] "{field}" must be a list.')
    return value


def _call(call: Any, i: int) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(call.get("id"), str) \
            or not isinstance(function.get("name"), str):
        raise RequestProblem(f'messages[{i}] has a tool call without "id" and '
                             '"function": {"name", "arguments"}.')
    raw = function.get("arguments") or "{}"
    try:
        arguments = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise RequestProblem(f"messages[{i}] has tool call arguments that are not JSON.") \
            from None
    if not isinstance(arguments, dict):
        raise RequestProblem(f"messages[{i}] has tool call arguments that are not an object.")
    return {"id": call["id"], "name": function["name"], "arguments": arguments}


# -- what goes back ----------------------------------------------------------------------
def wire_calls(calls: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neutral tool calls (`{"id", "name", "arguments": {...}}`) in OpenAI's form."""
    return [{"id": c["id"], "type": "function", "function": {
        "name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
        for c in calls]


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def completion(cid: str, model: str, text: str, calls: list[dict[str, Any]],
               counts: dict[str, int]) -> dict[str, Any]:
    """A whole `chat.completion`."""
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = wire_calls(calls)
    choice = {"index": 0, "message": message, "logprobs": None,
              "finish_reason": "tool_calls" if calls else "stop"}
    return {"id": cid, "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [choice], "usage": counts}


def chunk(cid: str, model: str, delta: dict[str, Any], finish: str | None = None,
          with_usage: bool = False) -> bytes:
    """One `chat.completion.chunk` event; with `include_usage` each carries `"usage": null`
    until the last, as OpenAI's do."""
    body: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": model, "choices": [
                                {"index": 0, "delta": delta, "logprobs": None,
                                 "finish_reason": finish}]}
    if with_usage:
        body["usage"] = None
    return event(body)


def usage_chunk(cid: str, model: str, counts: dict[str, int]) -> bytes:
    """The chunk `stream_options.include_usage` asks for: no choices, the usage."""
    return event({"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                  "model": model, "choices": [], "usage": counts})


def event(body: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def model_list(models: Iterable[str]) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": name, "object": "model", "created": 0,
                                        "owned_by": "moltbot"} for name in models]}


def error_body(code: str, message: str, status: int) -> dict[str, Any]:
    """OpenAI's error shape; `code` is Moltbot's error code (`model_not_found` for a model
    that is not configured, as OpenAI names it)."""
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "code": code, "param": None}}
