"""The OpenAI-compatible entry of the real gateway process, spoken to by the real `openai` SDK
and by the request shapes Open WebUI and LibreChat send, with the fake model behind it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer
from tests.trace_check import assert_complete_trace

GREETER = (
    "from moltbot_sdk import Skill, context\n"
    "class Greeter(Skill):\n"
    "    @context.handle(intent='greet', keywords=['say hi'], description='Greets')\n"
    "    def run(self, msg):\n"
    "        return 'hi ' + msg['chat']\n")
FAQ = ("# FAQ\n\n## How do I reset my password?\n\n"
       'Open Settings, choose Security and press "Reset password".\n')
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6k"
       "gAAAABJRU5ErkJggg==")  # one pixel
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


@pytest.fixture
def gw(home: Path, fake_model: FakeModelServer) -> Iterator[GatewayProcess]:
    """A gateway with two models (`llama2`, the default, and `coder`, which sees images), one
    keyword skill and one knowledge file."""
    (home / "skills").mkdir(parents=True)
    (home / "knowledge").mkdir()
    (home / "skills" / "greeter.py").write_text(GREETER, encoding="utf-8")
    (home / "knowledge" / "faq.md").write_text(FAQ, encoding="utf-8")
    config = model_config(fake_model.url)
    config["models"]["coder"] = {"endpoint": fake_model.url, "model": "coder-backend",
                                 "max_tokens": 64, "vision": True}
    write_config(home, config)
    proc = GatewayProcess(home, free_port()).start()
    yield proc
    proc.stop()


def sdk(gw: GatewayProcess, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key or gw.token, max_retries=0,
                         timeout=30)


def user(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def given_to_model(fake: FakeModelServer) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in fake.requests[-1]["body"]["messages"]]


def trace_of(gw: GatewayProcess, completion_id: str) -> str:
    result = run_cli(gw.home, "trace", completion_id.removeprefix("chatcmpl-"))
    assert result.returncode == 0, result.stderr
    return result.stdout


def raw_stream(gw: GatewayProcess, body: dict[str, Any]) -> list[str]:
    """The `data:` lines of a streamed answer, as sent."""
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body,
                      headers=gw.headers, timeout=30) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        return [line for line in answer.iter_lines() if line]


def sse_json(lines: list[str]) -> list[dict[str, Any]]:
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def test_whole_and_streamed_completions_through_the_sdk(gw: GatewayProcess,
                                                        fake_model: FakeModelServer) -> None:
    with sdk(gw) as client:
        whole = client.chat.completions.create(model="llama2", messages=[user("hello")])
        assert whole.choices[0].message.content == "echo: hello"
        assert whole.choices[0].finish_reason == "stop" and whole.model == "llama2"
        assert whole.usage is not None and whole.usage.completion_tokens == 2
        assert whole.usage.total_tokens == whole.usage.prompt_tokens + 2
        assert "route=chat:model" in trace_of(gw, whole.id)
        assert_complete_trace(gw, whole.id.removeprefix("chatcmpl-"))  # answered in the request

        chunks = list(client.chat.completions.create(
            model="llama2", messages=[user("stream me")], stream=True))
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: stream me"
        assert len([c for c in chunks if c.choices[0].delta.content]) >= 2  # as it formed
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert len({c.id for c in chunks}) == 1
        assert all(c.usage is None for c in chunks)  # not asked for

        counted = list(client.chat.completions.create(
            model="llama2", messages=[user("count me")], stream=True,
            stream_options={"include_usage": True}))
        assert counted[-1].choices == [] and counted[-1].usage is not None
        assert counted[-1].usage.completion_tokens == 3
        assert all(c.usage is None for c in counted[:-1])
        assert counted[-2].choices[0].finish_reason == "stop"

    lines = raw_stream(gw, {"model": "llama2", "stream": True, "messages": [user("raw")]})
    events = sse_json(lines)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == "echo: raw"
    assert all(e["object"] == "chat.completion.chunk" and "usage" not in e for e in events)


def test_models_lists_the_configured_ones_and_a_request_picks_one(
        gw: GatewayProcess, fake_model: FakeModelServer) -> None:
    with sdk(gw) as client:
        assert [m.id for m in client.models.list()] == ["llama2", "coder"]
        picked = client.chat.completions.create(model="coder", messages=[user("code")])
        assert picked.model == "coder"
        assert fake_model.requests[-1]["body"]["model"] == "coder-backend"
        calls = fake_model.calls
        with pytest.raises(openai.NotFoundError) as unknown:
            client.chat.completions.create(model="gpt-4o", messages=[user("x")])
        assert fake_model.calls == calls
    error = unknown.value.body
    assert isinstance(error, dict) and error["code"] == "model_not_found"
    assert error["type"] == "invalid_request_error" and "llama2, coder" in error["message"]
    default = httpx.post(f"{gw.url}/v1/chat/completions", headers=gw.headers, timeout=30,
                         json={"messages": [user("no model named")]})
    assert default.status_code == 200 and default.json()["model"] == "llama2"


def test_a_wrong_key_raises_the_sdks_authentication_error(gw: GatewayProcess,
                                                          fake_model: FakeModelServer) -> None:
    with sdk(gw, key="mb_wrong") as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            client.chat.completions.create(model="llama2", messages=[user("hi")])
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    assert refused.value.status_code == 401
    assert refused.value.body == {"message": refused.value.body["message"],  # type: ignore
                                  "type": "authentication_error", "code": "unauthorized",
                                  "param": None}
    assert fake_model.calls == 0
    url = f"{gw.url}/v1/chat/completions"
    assert httpx.post(url, json={"messages": "nope"}).status_code == 401  # the chain first
    with sdk(gw) as client, pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="llama2", messages=[])
    assert '"messages" must be a non-empty list' in str(bad.value)
    huge = httpx.post(url, headers=gw.headers, timeout=30,
                      json={"model": "llama2", "messages": [user("x" * 2 * 1024 * 1024)]})
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "payload_too_large"
    assert "gateway.max_body_bytes" in huge.json()["error"]["message"]


def test_commands_skills_and_knowledge_answer_through_the_entry(
        gw: GatewayProcess, fake_model: FakeModelServer) -> None:
    with sdk(gw) as client:
        helped = client.chat.completions.create(model="llama2", messages=[user("/help")])
        listed = helped.choices[0].message.content or ""
        assert listed.startswith("Commands:") and "/greet - Greets" in listed
        assert fake_model.calls == 0
        greeted = client.chat.completions.create(
            model="llama2", messages=[user("hello"), {"role": "assistant", "content": "hi"},
                                      user("please say hi")], user="ada")
        assert greeted.choices[0].message.content == "hi ada"
        assert "route=skill:greet" in trace_of(gw, greeted.id)
        streamed = list(client.chat.completions.create(
            model="llama2", messages=[user("say hi again")], user="bo", stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in streamed) == "hi bo"
        assert fake_model.calls == 0

        grounded = client.chat.completions.create(
            model="llama2", messages=[{"role": "system", "content": "Be brief."},
                                      user("reset password settings security")])
    reply = grounded.choices[0].message.content or ""
    assert reply.endswith("Sources: knowledge/faq.md (FAQ > How do I reset my password?)")
    given = given_to_model(fake_model)
    assert given[0] == ("system", "Be brief.")
    assert given[1][0] == "system" and "Reset password" in given[1][1]
    assert given[2] == ("user", "reset password settings security")


def test_the_clients_own_history_is_what_the_model_is_given(
        gw: GatewayProcess, fake_model: FakeModelServer) -> None:
    history = [{"role": "developer", "content": "You are terse."}, user("my name is Ada"),
               {"role": "assistant", "content": "Hello Ada"}, user("what is my name?")]
    with sdk(gw) as client:
        client.chat.completions.create(model="llama2", messages=history,  # type: ignore
                                       user="ada")
        assert given_to_model(fake_model) == [
            ("system", "You are terse."), ("user", "my name is Ada"),
            ("assistant", "Hello Ada"), ("user", "what is my name?")]
        # the same user's next request with another history: the stored turns stay out
        client.chat.completions.create(model="llama2", messages=[user("fresh start")],
                                       user="ada")
    given = given_to_model(fake_model)
    assert [role for role, _ in given] == ["system", "user"]
    assert given[0][1].startswith("You are Moltbot") and given[1] == ("user", "fresh start")


def test_content_given_as_a_list_of_parts_is_read(gw: GatewayProcess,
                                                  fake_model: FakeModelServer) -> None:
    parts = [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    with sdk(gw) as client:
        answer = client.chat.completions.create(model="llama2", messages=[user(parts)])
        assert answer.choices[0].message.content == "echo: part one\npart two"
        assert given_to_model(fake_model)[-1] == ("user", "part one\npart two")
        # an image goes with its turn to a model that sees images (coder: vision: true)
        seen = client.chat.completions.create(model="coder", messages=[
            user([image, {"type": "text", "text": "what is this?"}]),
            {"role": "assistant", "content": "a dot"}, user([image])])
        assert seen.choices[0].message.content == "echo: "
        sent = fake_model.requests[-1]["body"]["messages"]
        assert [m.get("images") for m in sent] == [None, [PNG], None, [PNG]]
        assert sent[1]["content"] == "what is this?"
        stored = httpx.get(f"{gw.url}/api/v1/messages/{seen.id.removeprefix('chatcmpl-')}",
                           headers=gw.headers).json()["message"]
        assert stored["text"] == "[1 image]"  # what the router read of an image alone
        with pytest.raises(openai.BadRequestError) as blind:
            client.chat.completions.create(model="llama2", messages=[user([*parts, image])])
        with pytest.raises(openai.BadRequestError) as fetched:
            client.chat.completions.create(model="coder", messages=[user([{
                "type": "image_url", "image_url": {"url": "https://example.com/a.png"}}])])
        with pytest.raises(openai.BadRequestError) as audio:
            client.chat.completions.create(model="coder", messages=[user([{
                "type": "input_audio", "input_audio": {"data": "", "format": "wav"}}])])
    assert "'llama2' cannot see images (models.llama2.vision" in str(blind.value)
    assert "fetches nothing, so send it as a data: URL" in str(fetched.value)
    assert "'input_audio' part" in str(audio.value)


def test_the_user_field_keys_the_session_and_the_trace(gw: GatewayProcess) -> None:
    with sdk(gw) as client:
        first = client.chat.completions.create(model="llama2", messages=[user("one")],
                                               user="ada")
        second = client.chat.completions.create(model="llama2", messages=[user("two")],
                                                user="ada")
        kitchen = client.chat.completions.create(
            model="llama2", messages=[user("three")], user="ada",
            extra_headers={"X-Moltbot-Chat": "kitchen"})
    one, two = trace_of(gw, first.id), trace_of(gw, second.id)
    assert " openai/ada " in one.splitlines()[0] and " openai/ada " in two.splitlines()[0]
    session = [line.split()[-2:] for line in one.splitlines() if line.split()[0] == "session"]
    assert session[0][1] == "(new)"
    assert f"  {session[0][0]}" in next(line for line in two.splitlines()
                                        if line.split()[0] == "session")
    assert "(new)" not in two
    assert " openai/kitchen " in trace_of(gw, kitchen.id).splitlines()[0]


def test_requests_of_one_user_are_not_queued_behind_each_other(
        gw: GatewayProcess, fake_model: FakeModelServer) -> None:
    """The client keeps the conversation, so its requests (several conversations, a title
    beside a chat) are answered at once, not one after the other like a chat's messages."""
    fake_model.hang = True
    answers: list[str] = []

    def ask(text: str) -> None:
        with sdk(gw) as client:
            done = client.chat.completions.create(model="llama2", messages=[user(text)],
                                                  user="ada")
        answers.append(done.choices[0].message.content or "")

    first = threading.Thread(target=ask, args=("first",))
    first.start()
    assert fake_model.wait_for(lambda: fake_model.calls == 1, 10)
    second = threading.Thread(target=ask, args=("second",))
    second.start()
    reached = fake_model.wait_for(lambda: fake_model.calls == 2, 10)  # while the first hangs
    fake_model.hang = False
    first.join(30)
    second.join(30)
    assert reached and sorted(answers) == ["echo: first", "echo: second"]


def test_a_client_hanging_up_mid_stream_cancels_the_model_call(
        gw: GatewayProcess, fake_model: FakeModelServer) -> None:
    fake_model.delay_chunk = 0.5
    fake_model.chunks = 6
    body = {"model": "llama2", "stream": True,
            "messages": [user("a long answer please, word by word")]}
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body,
                      headers=gw.headers, timeout=30) as answer:
        for line in answer.iter_lines():
            event = json.loads(line.removeprefix("data: ")) if line else {}
            if event.get("choices") and event["choices"][0]["delta"].get("content"):
                msg_id = event["id"].removeprefix("chatcmpl-")
                break
    assert fake_model.wait_for(lambda: fake_model.disconnects >= 1, 10)

    def cancelled() -> bool:
        found = run_cli(gw.home, "trace", msg_id, "--json")
        return found.returncode == 0 and any(
            s["step"] == "model" and s["outcome"] == "cancelled"
            for s in json.loads(found.stdout)["spans"])

    assert fake_model.wait_for(cancelled, 10)
    fake_model.delay_chunk = 0
    with sdk(gw) as client:
        after = client.chat.completions.create(model="llama2", messages=[user("after")])
    assert after.choices[0].message.content == "echo: after"


def test_client_tools_come_back_as_tool_calls_for_the_client_to_run(
        gw: GatewayProcess, fake_model: FakeModelServer) -> None:
    fake_model.tool_call_when(contains="weather", name="get_weather",
                              arguments={"city": "Paris"})
    asked = [user("what is the weather in Paris?")]
    with sdk(gw) as client:
        chunks = list(client.chat.completions.create(
            model="llama2", messages=asked, tools=[WEATHER], stream=True))  # type: ignore
        offered = [t["function"]["name"] for t in fake_model.requests[-1]["body"]["tools"]]
        assert "get_weather" in offered and "greet" in offered
        deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
        assert deltas[0].id and deltas[0].function and deltas[0].function.name == "get_weather"
        arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
        assert json.loads(arguments) == {"city": "Paris"}
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"

        whole = client.chat.completions.create(model="llama2", messages=asked,
                                               tools=[WEATHER])  # type: ignore
        choice = whole.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
        call = choice.message.tool_calls[0]
        answered = client.chat.completions.create(model="llama2", tools=[WEATHER],  # type: ignore
                                                  messages=[*asked, choice.message.model_dump(
                                                      exclude_none=True),
                                                      {"role": "tool", "tool_call_id": call.id,
                                                       "content": "sunny, 24 C"}])
        assert answered.choices[0].message.content == "tool said: sunny, 24 C"
        sent = fake_model.requests[-1]["body"]["messages"]
        assert sent[-2]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert sent[-1] == {"role": "tool", "content": "sunny, 24 C", "tool_name": "get_weather"}

        clash = {"type": "function", "function": {"name": "greet", "parameters": {}}}
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="llama2", messages=asked,
                                           tools=[clash])  # type: ignore
        assert "gateway's own" in str(refused.value) and "greet" in str(refused.value)
        with pytest.raises(openai.BadRequestError) as forced:
            client.chat.completions.create(model="llama2", messages=asked, tools=[WEATHER],
                                           tool_choice="required")  # type: ignore
        assert '"tool_choice" may be "auto" or "none"' in str(forced.value)


def test_requests_shaped_as_open_webui_and_librechat_send_them(
        gw: GatewayProcess, fake_model: FakeModelServer) -> None:
    with httpx.Client(base_url=f"{gw.url}/v1", headers=gw.headers, timeout=30) as http:
        assert [m["id"] for m in http.get("/models").json()["data"]] == ["llama2", "coder"]

        # Open WebUI: the chat, streamed, with its parameters and a usage request
        events = sse_json(raw_stream(gw, {
            "stream": True, "model": "llama2", "temperature": 0.8, "top_p": 0.9,
            "max_tokens": 512, "seed": 42, "stop": ["</s>"],
            "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": "You are helpful."}, user("hi"),
                         {"role": "assistant", "content": "echo: hi"},
                         user([{"type": "text", "text": "and now?"}])]}))
        assert events[-1]["usage"]["completion_tokens"] == 3 and events[-1]["choices"] == []
        # Open WebUI: the title of the chat, asked in the background
        title = http.post("/chat/completions", json={
            "model": "llama2", "stream": False, "max_tokens": 1000, "messages": [user(
                "### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing the "
                "chat history.\n### Chat History:\n<chat_history>\nUSER: hi\nASSISTANT: "
                "echo: hi\n</chat_history>")]})
        assert title.status_code == 200
        assert title.json()["choices"][0]["message"]["content"].startswith("echo: ### Task:")

        # LibreChat: its user's id, names on messages, penalties, streamed with usage
        events = sse_json(raw_stream(gw, {
            "model": "llama2", "user": "65f0c0ffee0123456789abcd", "temperature": 1,
            "top_p": 1, "presence_penalty": 0, "frequency_penalty": 0, "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": "Instructions"},
                         {"role": "user", "content": "hello", "name": "Ada"}]}))
        assert "".join(e["choices"][0]["delta"].get("content", "")
                       for e in events if e["choices"]) == "echo: hello"
        msg_id = events[0]["id"].removeprefix("chatcmpl-")
        assert " openai/65f0c0ffee0123456789abcd " in run_cli(
            gw.home, "trace", msg_id).stdout.splitlines()[0]
        # LibreChat: the title, asked with one system message and no user message
        prompt = ("Please generate a concise, 5-word-or-less title for the conversation.\n"
                  '||>User:\n"hello"\n||>Response:\n"echo: hello"\n\n||>Title:')
        titled = http.post("/chat/completions", json={
            "model": "llama2", "temperature": 0.2, "max_tokens": 16, "presence_penalty": 0,
            "frequency_penalty": 0, "user": "65f0c0ffee0123456789abcd",
            "messages": [{"role": "system", "content": prompt}]})
        assert titled.status_code == 200, titled.text
        assert given_to_model(fake_model) == [("system", prompt)]


def test_refusals_come_in_openai_shape_with_the_sdks_statuses(
        home: Path, fake_model: FakeModelServer) -> None:
    config = model_config(fake_model.url)
    config["auth"] = {"rate_limit": {"per_ip": "3/minute", "exempt": []}}
    write_config(home, config)
    gw = GatewayProcess(home, free_port()).start()
    try:
        with sdk(gw) as client, pytest.raises(openai.RateLimitError) as limited:
            for _ in range(4):
                client.chat.completions.create(model="llama2", messages=[user("hi")])
        assert int(limited.value.response.headers["Retry-After"]) > 0
        assert limited.value.body["code"] == "rate_limited"  # type: ignore[index]
        assert limited.value.body["type"] == "rate_limit_error"  # type: ignore[index]
    finally:
        gw.stop()


def test_the_entry_switched_off_answers_unavailable(home: Path,
                                                    fake_model: FakeModelServer) -> None:
    write_config(home, {**model_config(fake_model.url),
                        "channels": {"openai": {"enabled": False}}})
    gw = GatewayProcess(home, free_port()).start()
    try:
        with sdk(gw) as client, pytest.raises(openai.InternalServerError) as off:
            client.models.list()
        assert off.value.status_code == 503
        assert "channels.openai.enabled" in str(off.value)
    finally:
        gw.stop()
