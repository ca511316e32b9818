"""The fake model server, driven by the real ``ollama`` and ``openai`` clients over HTTP.

Why: every other Moltbot test trusts this fake to behave like Ollama and like an
OpenAI-compatible server; these tests pin that down with the clients the product
itself uses, so a fake that drifts from the real wire format fails here first.
"""

from __future__ import annotations

import http.client
import json
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.fakes.fake_model import FakeModelServer, Rule

MODEL = "llama3.2"
REPO = Path(__file__).resolve().parents[1]
FAQ_TOOL = {
    "type": "function",
    "function": {
        "name": "faq_query",
        "description": "Look up the FAQ.",
        "parameters": {
            "type": "object",
            "properties": {"question": {"type": "string"}},
            "required": ["question"],
        },
    },
}


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def srv() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


@pytest.fixture
def oll(srv: FakeModelServer) -> Iterator[ollama.Client]:
    # The ollama client has no timeout by default: bound it so a bug fails instead of hanging.
    with ollama.Client(host=srv.url, timeout=10) as client:
        yield client


@pytest.fixture
def oai(srv: FakeModelServer) -> Iterator[openai.OpenAI]:
    # max_retries=0: the error tests must see the first answer, not wait for back-off.
    with openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0, timeout=10) as client:
        yield client


# --------------------------------------------------------------------------- Ollama API


def test_ollama_service_endpoints(srv: FakeModelServer, oll: ollama.Client) -> None:
    assert httpx.get(srv.url + "/").text == "Ollama is running"
    assert httpx.head(srv.url + "/").status_code == 200
    assert "version" in httpx.get(srv.url + "/api/version").json()
    assert [m.model for m in oll.list().models] == ["fake-model:latest"]
    srv.known_models = {MODEL, "qwen3:0.6b"}
    assert [m.model for m in oll.list().models] == ["llama3.2:latest", "qwen3:0.6b"]


def test_ollama_streaming_chat(srv: FakeModelServer, oll: ollama.Client) -> None:
    parts = list(
        oll.chat(
            model=MODEL,
            messages=user("hello there friend"),
            stream=True,
            options={"num_predict": 64},
        )
    )
    content = [p.message.content for p in parts if not p.done]
    assert len(content) >= 2, "the reply must arrive in several pieces"
    assert "".join(content) == "echo: hello there friend"
    last = parts[-1]
    assert last.done and last.done_reason == "stop"
    assert last.message.content == "" and last.eval_count and last.prompt_eval_count == 3
    assert all(p.model == MODEL and p.created_at for p in parts)
    request = srv.requests[-1]
    assert request["path"] == "/api/chat"
    assert request["body"]["options"]["num_predict"] == 64
    assert request["headers"]["content-type"] == "application/json"


def test_ollama_stream_is_ndjson_and_default(srv: FakeModelServer) -> None:
    # Without "stream", Ollama streams: one JSON object per line.
    request = {"model": MODEL, "messages": user("a b c")}
    with httpx.stream("POST", srv.url + "/api/chat", json=request) as r:
        assert r.headers["content-type"] == "application/x-ndjson"
        assert r.headers["transfer-encoding"] == "chunked"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [x["done"] for x in lines] == [False, False, False, True]
    assert "".join(x["message"]["content"] for x in lines) == "echo: a b c"


def test_ollama_non_streaming_chat(srv: FakeModelServer, oll: ollama.Client) -> None:
    answer = oll.chat(model=MODEL, messages=user("hi"), options={"num_predict": 7})
    assert answer.done and answer.done_reason == "stop"
    assert answer.message.role == "assistant" and answer.message.content == "echo: hi"
    assert srv.requests[-1]["body"]["stream"] is False
    assert srv.requests[-1]["body"]["options"]["num_predict"] == 7
    assert srv.calls == 1


def test_num_predict_cuts_the_reply(oll: ollama.Client) -> None:
    answer = oll.chat(model=MODEL, messages=user("one two three"), options={"num_predict": 2})
    assert answer.message.content == "echo: one"
    assert answer.done_reason == "length" and answer.eval_count == 2


def test_ollama_tool_call_and_tool_result(srv: FakeModelServer, oll: ollama.Client) -> None:
    srv.tool_call_when(contains="faq", name="faq_query", arguments={"question": "opening hours"})
    answer = oll.chat(model=MODEL, messages=user("check the FAQ"), tools=[FAQ_TOOL])
    (call,) = answer.message.tool_calls or []
    assert call.function.name == "faq_query"
    assert call.function.arguments == {"question": "opening hours"}  # an object, as Ollama sends
    # Streamed, the tool call arrives in a chunk of its own before the final one.
    parts = list(oll.chat(model=MODEL, messages=user("faq"), tools=[FAQ_TOOL], stream=True))
    assert [c.function.name for p in parts for c in p.message.tool_calls or []] == ["faq_query"]
    assert parts[-1].done
    # The tool's answer comes back: the rule does not fire again, the model reports it.
    history = [
        *user("check the FAQ"),
        answer.message,
        {"role": "tool", "content": "9 to 5", "tool_name": "faq_query"},
    ]
    final = oll.chat(model=MODEL, messages=history, tools=[FAQ_TOOL])
    assert final.message.content == "tool said: 9 to 5"


def test_tool_rule_needs_the_tool_offered(srv: FakeModelServer, oll: ollama.Client) -> None:
    srv.tool_call_when(contains="faq", name="faq_query", arguments={"question": "?"})
    answer = oll.chat(model=MODEL, messages=user("faq please"))
    assert answer.message.tool_calls is None and answer.message.content == "echo: faq please"


def test_first_matching_rule_wins(srv: FakeModelServer, oll: ollama.Client) -> None:
    srv.reply_when(contains="weather", reply="sunny")
    srv.reply_when(contains="weather", reply="rainy")
    srv.script(Rule(contains="done", reply="noted", role="tool"))
    assert oll.chat(model=MODEL, messages=user("The WEATHER?")).message.content == "sunny"
    assert oll.chat(model=MODEL, messages=user("other")).message.content == "echo: other"
    tool_msg = [{"role": "tool", "content": "job done"}]
    assert oll.chat(model=MODEL, messages=tool_msg).message.content == "noted"


def test_unknown_model_only_when_known_models_set(srv: FakeModelServer, oll: ollama.Client) -> None:
    assert oll.chat(model="anything", messages=user("x")).message.content == "echo: x"
    srv.known_models = {MODEL}
    assert oll.chat(model="llama3.2:latest", messages=user("x")).message.content == "echo: x"
    with pytest.raises(ollama.ResponseError) as err:
        oll.chat(model="nope", messages=user("x"))
    assert err.value.status_code == 404 and err.value.error == "model 'nope' not found"


# --------------------------------------------------------------------------- OpenAI API


def test_openai_non_streaming(srv: FakeModelServer, oai: openai.OpenAI) -> None:
    done = oai.chat.completions.create(model=MODEL, messages=user("hi there"))
    assert done.object == "chat.completion" and done.model == MODEL
    assert done.choices[0].message.content == "echo: hi there"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.prompt_tokens == 2
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    assert srv.requests[-1]["path"] == "/v1/chat/completions"
    assert srv.requests[-1]["headers"]["authorization"] == "Bearer x"
    assert [m.id for m in oai.models.list()] == ["fake-model"]


def test_openai_streaming(srv: FakeModelServer, oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model=MODEL,
            messages=user("one two three"),
            stream=True,
            max_tokens=50,
            stream_options={"include_usage": True},
        )
    )
    deltas = [c.choices[0].delta.content for c in chunks if c.choices]
    deltas = [d for d in deltas if d]
    assert len(deltas) >= 2 and "".join(deltas) == "echo: one two three"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert srv.requests[-1]["body"]["stream"] is True
    assert srv.requests[-1]["body"]["max_tokens"] == 50


def test_openai_max_tokens_cuts(oai: openai.OpenAI) -> None:
    done = oai.chat.completions.create(model=MODEL, messages=user("a b c"), max_tokens=2)
    assert done.choices[0].message.content == "echo: a"
    assert done.choices[0].finish_reason == "length"


def test_openai_tool_calls(srv: FakeModelServer, oai: openai.OpenAI) -> None:
    srv.tool_call_when(contains="faq", name="faq_query", arguments={"question": "refunds?"})
    done = oai.chat.completions.create(model=MODEL, messages=user("faq"), tools=[FAQ_TOOL])
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.id and call.type == "function" and call.function.name == "faq_query"
    assert json.loads(call.function.arguments) == {"question": "refunds?"}  # a JSON string
    # Streamed: name and id first, then the arguments in pieces to be concatenated.
    stream = oai.chat.completions.create(
        model=MODEL, messages=user("faq"), tools=[FAQ_TOOL], stream=True
    )
    ids, names, args, finish = set(), [], "", None
    for chunk in stream:
        for part in chunk.choices[0].delta.tool_calls or []:
            ids.add(part.id) if part.id else None
            names += [part.function.name] if part.function and part.function.name else []
            args += (part.function.arguments or "") if part.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert len(ids) == 1 and names == ["faq_query"] and finish == "tool_calls"
    assert json.loads(args) == {"question": "refunds?"}
    # The tool result, OpenAI style.
    history = [
        *user("faq"),
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "30 days"},
    ]
    answer = oai.chat.completions.create(model=MODEL, messages=history, tools=[FAQ_TOOL])
    assert answer.choices[0].message.content == "tool said: 30 days"


def test_openai_api_key_checked_only_when_set(srv: FakeModelServer, oai: openai.OpenAI) -> None:
    srv.api_key = "secret"
    with pytest.raises(openai.AuthenticationError):
        oai.chat.completions.create(model=MODEL, messages=user("x"))
    good = openai.OpenAI(base_url=srv.url + "/v1", api_key="secret", max_retries=0, timeout=10)
    with good:
        assert good.chat.completions.create(model=MODEL, messages=user("x")).choices
    with ollama.Client(host=srv.url, timeout=10, headers={"Authorization": "Bearer secret"}) as oc:
        assert oc.chat(model=MODEL, messages=user("y")).message.content == "echo: y"


def test_openai_unknown_model(srv: FakeModelServer, oai: openai.OpenAI) -> None:
    srv.known_models = {MODEL}
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="gpt-x", messages=user("x"))


# --------------------------------------------------------------------------- failures


def test_fail_status_raises_documented_errors(
    srv: FakeModelServer, oll: ollama.Client, oai: openai.OpenAI
) -> None:
    srv.fail_status = 500
    with pytest.raises(ollama.ResponseError) as err:
        oll.chat(model=MODEL, messages=user("x"))
    assert err.value.status_code == 500
    with pytest.raises(ollama.ResponseError) as err:
        list(oll.chat(model=MODEL, messages=user("x"), stream=True))
    assert err.value.status_code == 500
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model=MODEL, messages=user("x"))
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model=MODEL, messages=user("x"), stream=True)
    assert srv.calls == 4
    srv.fail_status = None
    assert oll.chat(model=MODEL, messages=user("ok")).message.content == "echo: ok"


def test_fail_times_then_recover(srv: FakeModelServer, oll: ollama.Client) -> None:
    srv.fail_status, srv.fail_times = 503, 1
    with pytest.raises(ollama.ResponseError) as err:
        oll.chat(model=MODEL, messages=user("x"))
    assert err.value.status_code == 503
    assert oll.chat(model=MODEL, messages=user("x")).message.content == "echo: x"
    assert srv.fail_status is None


def test_die_refuses_connections(
    srv: FakeModelServer, oll: ollama.Client, oai: openai.OpenAI
) -> None:
    assert oll.chat(model=MODEL, messages=user("x")).done  # leaves a pooled keep-alive connection
    srv.die()
    with pytest.raises(ConnectionError):
        oll.chat(model=MODEL, messages=user("x"))
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model=MODEL, messages=user("x"))


def test_restart_on_same_port(srv: FakeModelServer, oll: ollama.Client) -> None:
    url = srv.url
    assert oll.chat(model=MODEL, messages=user("before")).message.content == "echo: before"
    srv.stop()
    assert not srv.running
    srv.start()
    assert srv.url == url
    assert oll.chat(model=MODEL, messages=user("after")).message.content == "echo: after"
    assert srv.calls == 2


def test_hang_until_released(srv: FakeModelServer, oll: ollama.Client) -> None:
    srv.hang = True
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(oll.chat, model=MODEL, messages=user("wait"))
        assert srv.wait_for(lambda: srv.calls == 1)
        assert not pending.done()
        srv.hang = False
        assert pending.result(timeout=5).message.content == "echo: wait"


def test_stop_closes_hanging_connections(srv: FakeModelServer, oll: ollama.Client) -> None:
    srv.hang = True
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(oll.chat, model=MODEL, messages=user("wait"))
        assert srv.wait_for(lambda: srv.calls == 1)
        srv.stop()
        with pytest.raises(httpx.TransportError):
            pending.result(timeout=5)
    assert srv.disconnects == 0  # the server hung up, not the client


def test_client_timeout_during_hang_counts_as_disconnect(srv: FakeModelServer) -> None:
    srv.hang = True
    with ollama.Client(host=srv.url, timeout=0.2) as quick, pytest.raises(httpx.ReadTimeout):
        quick.chat(model=MODEL, messages=user("x"))
    assert srv.wait_for(lambda: srv.disconnects == 1)


def test_delay_first(srv: FakeModelServer, oll: ollama.Client) -> None:
    srv.delay_first = 0.2
    started = time.monotonic()
    assert oll.chat(model=MODEL, messages=user("slow")).message.content == "echo: slow"
    assert time.monotonic() - started >= 0.2
    srv.delay_first = 30  # a client that gives up is noticed at once, not after 30 s
    with ollama.Client(host=srv.url, timeout=0.2) as quick, pytest.raises(httpx.ReadTimeout):
        quick.chat(model=MODEL, messages=user("x"))
    assert srv.wait_for(lambda: srv.disconnects == 1)


def test_ollama_stream_closed_early_is_counted(srv: FakeModelServer, oll: ollama.Client) -> None:
    srv.delay_chunk = 30  # the answer would take minutes; the client leaves after one piece
    parts = oll.chat(model=MODEL, messages=user("a long story"), stream=True)
    assert next(parts).message.content
    parts.close()
    assert srv.wait_for(lambda: srv.disconnects == 1)
    srv.delay_chunk = 0
    assert oll.chat(model=MODEL, messages=user("next")).message.content == "echo: next"


def test_openai_stream_closed_early_is_counted(srv: FakeModelServer, oai: openai.OpenAI) -> None:
    srv.delay_chunk = 30
    stream = oai.chat.completions.create(model=MODEL, messages=user("long"), stream=True)
    assert next(iter(stream)).choices
    stream.close()
    assert srv.wait_for(lambda: srv.disconnects == 1)


def test_delay_chunk_spaces_pieces(srv: FakeModelServer, oll: ollama.Client) -> None:
    srv.delay_chunk = 0.05
    started = time.monotonic()
    parts = list(oll.chat(model=MODEL, messages=user("a b c"), stream=True))
    assert len(parts) == 4 and time.monotonic() - started >= 0.15
    assert srv.disconnects == 0


# --------------------------------------------------------------------------- HTTP details


def test_keep_alive_and_chunked_request(srv: FakeModelServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", int(srv.url.rsplit(":", 1)[1]), timeout=5)
    conn.request("GET", "/api/version")
    assert conn.getresponse().read()
    sock = conn.sock
    body = json.dumps({"model": MODEL, "messages": user("kept"), "stream": True}).encode()
    conn.request(
        "POST",
        "/api/chat",
        body=iter([body[:10], body[10:]]),  # chunked upload
        headers={"Content-Type": "application/json"},
    )
    reply = conn.getresponse()
    lines = [json.loads(x) for x in reply.read().splitlines()]
    assert "".join(x["message"]["content"] for x in lines) == "echo: kept"
    assert conn.sock is sock, "the server must keep the connection open"
    conn.close()
    assert srv.requests[-1]["body"]["messages"][0]["content"] == "kept"
    assert srv.requests[-1]["headers"]["transfer-encoding"] == "chunked"


def test_bad_json_and_unknown_path(srv: FakeModelServer) -> None:
    assert httpx.post(srv.url + "/api/chat", content=b"{nope").status_code == 400
    assert srv.requests[-1]["body"] is None
    assert httpx.get(srv.url + "/api/nothing").status_code == 404


def test_concurrent_calls(srv: FakeModelServer, oll: ollama.Client) -> None:
    srv.delay_first = 0.05
    with ThreadPoolExecutor(8) as pool:
        texts = [f"n{i}" for i in range(16)]
        answers = pool.map(lambda t: oll.chat(model=MODEL, messages=user(t)).message.content, texts)
        assert list(answers) == [f"echo: {t}" for t in texts]
    assert srv.calls == 16


def test_wait_for_times_out(srv: FakeModelServer) -> None:
    assert srv.wait_for(lambda: srv.calls == 1, timeout=0.05) is False


def test_reset(srv: FakeModelServer, oll: ollama.Client) -> None:
    srv.reply_when(reply="scripted")
    srv.fail_status = 500
    srv.reset()
    assert oll.chat(model=MODEL, messages=user("x")).message.content == "echo: x"
    assert srv.calls == 1 and srv.rules == []


# --------------------------------------------------------------------------- separate process


def _spawn(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.fake_model", "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready and proc.stdout else ""
    if not line.startswith("READY http://127.0.0.1:"):
        proc.kill()
        raise AssertionError(f"no READY line: {line!r} {proc.communicate()[1]}")
    return proc, line.split()[1]


@pytest.mark.parametrize("mode", [[], ["--fast"]], ids=["threaded", "fast"])
def test_command_line_server(mode: list[str]) -> None:
    proc, url = _spawn(*mode)
    try:
        with ollama.Client(host=url, timeout=10) as oc:
            assert oc.chat(model=MODEL, messages=user("hi")).message.content == "echo: hi"
            parts = oc.chat(model=MODEL, messages=user("a b"), stream=True)
            assert "".join(p.message.content or "" for p in parts) == "echo: a b"
            assert oc.list().models
        with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=10) as ai:
            done = ai.chat.completions.create(model=MODEL, messages=user("yo"))
            assert done.choices[0].message.content == "echo: yo"
            stream = ai.chat.completions.create(model=MODEL, messages=user("yo"), stream=True)
            assert "".join(c.choices[0].delta.content or "" for c in stream) == "echo: yo"
            with ThreadPoolExecutor(8) as pool:
                texts = [f"p{i}" for i in range(32)]
                got = pool.map(
                    lambda t: (
                        ai.chat.completions.create(model=MODEL, messages=user(t))
                        .choices[0]
                        .message.content
                    ),
                    texts,
                )
                assert list(got) == [f"echo: {t}" for t in texts]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "Traceback" not in err, err
