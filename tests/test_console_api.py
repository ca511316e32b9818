"""The console's APIs on the real gateway: each behind the console's door, config edits with
problems at their line, versions and rollback, file edits confined to skills/ and knowledge/,
the log tail, message search and what the model was given (masked), token usage as CSV."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx
import pytest
import websocket
import yaml

from gateway.api.console_config import key_line
from gateway.api.console_files import PathRefused, resolve
from tests.conftest import GatewayProcess


def get(gw: GatewayProcess, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{gw.url}{path}", headers=gw.headers, params=params, timeout=30)


def send(gw: GatewayProcess, method: str, path: str, body: Any) -> httpx.Response:
    return httpx.request(method, f"{gw.url}{path}", headers=gw.headers, json=body, timeout=30)


def until(check: Any, deadline_s: float = 15.0) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("condition not met before the deadline")


@pytest.mark.parametrize("path,line", [
    ("gateway.context_tokens", 3), ("models.llama2.endpoints[1]", 7),
    ("models.llama2.endpoints.0", 6), ("models.llama2.nope", 5), ("nothing", None),
])
def test_a_key_path_is_found_at_its_line(path: str, line: int | None) -> None:
    text = ("# top\ngateway:\n  context_tokens: lots\nmodels:\n  llama2:\n"
            "    endpoints: [http://a,\n      http://b]\n")
    assert key_line(yaml.compose(text), path) == line


def test_every_console_api_passes_the_door(gateway: GatewayProcess) -> None:
    for path in ("/api/v1/usage", "/api/v1/sessions", "/api/v1/messages", "/api/v1/config",
                 "/api/v1/files/skills", "/api/v1/logs", "/api/v1/knowledge/search?q=x"):
        refused = httpx.get(f"{gateway.url}{path}", timeout=10)
        assert refused.status_code == 401, path
        assert get(gateway, path).status_code in (200, 400), path
    with pytest.raises(websocket.WebSocketBadStatusException) as no_token:
        websocket.create_connection(f"ws://127.0.0.1:{gateway.port}/api/v1/logs/stream",
                                    timeout=10)
    assert no_token.value.status_code == 401
    cookie = f"moltbot_token={gateway.token}"
    with pytest.raises(websocket.WebSocketBadStatusException) as cross_site:
        websocket.create_connection(f"ws://127.0.0.1:{gateway.port}/api/v1/logs/stream",
                                    timeout=10, cookie=cookie, origin="http://evil.example")
    assert cross_site.value.status_code == 403  # another site's page: refused at the door
    # a cookie write that is not JSON (a cross-site form) is refused
    form = httpx.post(f"{gateway.url}/api/v1/config", data={"text": "x"},
                      headers={"Cookie": cookie}, timeout=10)
    assert form.status_code == 401
    assert gateway.post("still serving").status_code == 200


def test_config_edit_problems_versions_and_rollback(gateway: GatewayProcess) -> None:
    original = get(gateway, "/api/v1/config").json()["text"]
    bad = original + "gateway:\n  context_tokens: lots\n  bogus: 1\n"
    checked = send(gateway, "POST", "/api/v1/config/check", {"text": bad}).json()["problems"]
    lines = {p["line"] for p in checked}
    n = original.count("\n")
    assert lines == {n + 2, n + 3}, checked
    refused = send(gateway, "POST", "/api/v1/config", {"text": bad})
    assert refused.status_code == 422 and not refused.json()["applied"]
    assert (gateway.home / "config.yaml").read_text() == original  # nothing written

    yaml_error = send(gateway, "POST", "/api/v1/config/check", {"text": "a: [1,\n"}).json()
    assert yaml_error["problems"][0]["line"] == 2

    applied = send(gateway, "POST", "/api/v1/config",
                   {"text": original + "gateway:\n  context_tokens: 1500\n"}).json()
    assert applied["applied"] and applied["error"] is None
    assert "+  context_tokens: 1500" in applied["diff"]
    versions = get(gateway, "/api/v1/config").json()["versions"]
    assert [v["source"] for v in versions] == ["console", "before the console"]
    assert versions[0]["who"] == "token:dashboard"
    audit = [json.loads(line) for line in
             (gateway.home / "data/logs/audit.log").read_text().splitlines()]
    edited = [a for a in audit if a.get("event.action") == "config.edited"]
    assert edited and edited[-1]["user.name"].startswith("token:")  # the audit log masks it

    back = send(gateway, "POST", "/api/v1/config/rollback",
                {"version": versions[-1]["version"]}).json()
    assert back["applied"]
    assert (gateway.home / "config.yaml").read_text() == original
    assert get(gateway, "/api/v1/config").json()["versions"][0]["source"].startswith(
        "rollback to v")


def test_a_config_the_running_gateway_refuses_says_why(gateway: GatewayProcess) -> None:
    original = get(gateway, "/api/v1/config").json()["text"]
    # valid YAML and schema, but a channel option only the running gateway checks
    text = original + "channels:\n  websocket:\n    enabled: true\n    nonsense: 1\n"
    body = send(gateway, "POST", "/api/v1/config", {"text": text})
    result = body.json()
    if body.status_code == 422:  # the schema already knows the option: shown at its line
        assert result["problems"][0]["line"] == original.count("\n") + 4
    else:
        assert not result["applied"] and "nonsense" in result["error"]


def test_files_stay_inside_skills_and_knowledge(gateway: GatewayProcess) -> None:
    outside = gateway.home / "outside.md"
    outside.write_text("secret")
    (gateway.home / "knowledge").mkdir(exist_ok=True)
    os.symlink(outside, gateway.home / "knowledge" / "link.md")
    for path in ("knowledge/%2E%2E/config.yaml", "knowledge/link.md", "data/x.md",
                 "knowledge/../config.yaml"):
        got = send(gateway, "PUT", f"/api/v1/files/{path}", {"text": "x"})
        assert got.status_code in (403, 404, 405), (path, got.text)  # 405: the client ate ..
    assert outside.read_text() == "secret"
    assert get(gateway, "/api/v1/files/knowledge/link.md").status_code == 403


def test_paths_are_checked_like_the_files_tool(tmp_path: Any) -> None:
    (tmp_path / "skills").mkdir()
    for root, path in (("skills", "/etc/passwd.py"), ("skills", "../config.yaml"),
                       ("skills", "a/../../x.py"), ("data", "x.md"), ("skills", "x\x00.py"),
                       ("skills", "run.exe"), ("skills", "sub/x.py")):
        with pytest.raises(PathRefused):
            resolve(tmp_path, root, path)
    assert resolve(tmp_path, "skills", "new.py") == (tmp_path / "skills/new.py").resolve()


def test_a_broken_skill_shows_its_error_and_keeps_the_last_good(
        gateway: GatewayProcess) -> None:
    good = ("from moltbot_sdk import Skill, context\n\n\nclass Hello(Skill):\n"
            "    @context.handle(intent='hello', keywords=['hello there'])\n"
            "    def hello(self, msg):\n        return {'reply': 'hi from the console skill'}\n")
    saved = send(gateway, "PUT", "/api/v1/files/skills/console_hello.py", {"text": good}).json()
    assert saved["reloaded"] and saved["load"]["ok"], saved
    assert saved["load"]["intents"] == ["hello"]
    broken = send(gateway, "PUT", "/api/v1/files/skills/console_hello.py",
                  {"text": good.replace("return", "return (")}).json()
    assert not broken["load"]["ok"]
    assert "line" in broken["load"]["error"] and "keeps running" in broken["load"]["error"]
    assert "hi from the console skill" in gateway.post("hello there").json()["reply"]


def test_logs_tail_search_and_what_the_model_was_given(gateway: GatewayProcess) -> None:
    # access.log: a line for every message (gateway.log has one only at logs.level debug)
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{gateway.port}/api/v1/logs/stream?source=access", timeout=30,
        header=[f"Authorization: Bearer {gateway.token}"])
    reply = gateway.post("my api_key=sk-verysecretvalue please", chat="given").json()
    msg_id = reply["id"]
    seen: list[dict[str, Any]] = []
    while not any(line["msg_id"] == msg_id for line in seen):
        frame = json.loads(ws.recv())
        seen += frame["lines"]
    ws.close()

    lines = get(gateway, "/api/v1/logs", msg_id=msg_id).json()["lines"]
    assert {line["source"] for line in lines} == {"access"}  # gateway.log: at debug only
    older = get(gateway, "/api/v1/logs", source="access", q=f"message {msg_id}",
                level="info").json()
    assert any(line["msg_id"] == msg_id for line in older["lines"])

    found = get(gateway, "/api/v1/messages", q="verysecret").json()["messages"]
    assert [m["id"] for m in found] == [msg_id]
    assert get(gateway, "/api/v1/messages", msg_id=msg_id[:12]).json()["messages"]
    assert get(gateway, "/api/v1/sessions", q="given").json()["sessions"][0]["chat"] == "given"

    detail = get(gateway, f"/api/v1/messages/{msg_id}").json()
    given = detail["model_input"]["given"]
    assert given[-1]["role"] == "user" and "sk-verysecretvalue" not in json.dumps(given)
    assert "api_key=***" in given[-1]["content"]
    assert detail["model_input"]["prompt_tokens"] > 0
    assert detail["spans"][0]["step"] == "guard"

    usage = get(gateway, "/api/v1/usage", days=7, format="csv")
    rows = usage.text.strip().splitlines()
    assert rows[0] == "day,model,channel,messages,prompt,completion"
    assert any(",llama2,http," in r for r in rows[1:])
    assert until(lambda: get(gateway, "/api/v1/usage").json()["rows"])
    assert get(gateway, "/api/v1/usage", days=0).status_code == 400


def test_an_open_log_tail_does_not_hold_up_a_stop(gateway: GatewayProcess) -> None:
    ws = websocket.create_connection(f"ws://127.0.0.1:{gateway.port}/api/v1/logs/stream",
                                     timeout=30, header=[f"Authorization: Bearer {gateway.token}"])
    assert gateway.stop() == 0  # stop() fails the test if the gateway ignores SIGTERM
    ws.close()


def test_a_hand_edit_between_console_edits_is_kept_as_a_version(
        gateway: GatewayProcess) -> None:
    original = get(gateway, "/api/v1/config").json()["text"]
    assert send(gateway, "POST", "/api/v1/config", {"text": original}).json()["version"] is None
    assert get(gateway, "/api/v1/config").json()["versions"] == []  # nothing changed
    first = original + "gateway:\n  context_tokens: 1500\n"
    assert send(gateway, "POST", "/api/v1/config", {"text": first}).json()["applied"]
    by_hand = first.replace("1500", "1600")
    (gateway.home / "config.yaml").write_text(by_hand)
    until(lambda: "1600" in get(gateway, "/api/v1/config").json()["text"])
    second = first.replace("1500", "1700")
    assert send(gateway, "POST", "/api/v1/config", {"text": second}).json()["applied"]
    versions = get(gateway, "/api/v1/config").json()["versions"]
    assert [v["source"] for v in versions] == [
        "console", "edited outside the console", "console", "before the console"]
    assert "+  context_tokens: 1600" in versions[1]["diff"]


def test_the_conversation_a_chat_continues(gateway: GatewayProcess) -> None:
    """What the console's chat shows after a reload: the turns the model will continue, without
    commands; after /new, none (the next message starts fresh)."""
    def current() -> dict[str, Any]:
        return get(gateway, "/api/v1/sessions/current", channel="http", chat="talk").json()

    assert current() == {"session": None, "messages": []}
    first = gateway.post("remember the zebra", chat="talk").json()
    assert gateway.post("/help", chat="talk").status_code == 200  # a command, not a turn
    gateway.post("and then", chat="talk")
    body = current()
    assert body["session"] == first["session"]
    assert [m["text"] for m in body["messages"]] == ["remember the zebra", "and then"]
    assert body["messages"][0]["id"] == first["id"]
    assert body["messages"][0]["reply"] == first["reply"]

    fresh = gateway.post("/new", chat="talk").json()
    assert current() == {"session": fresh["session"], "messages": []}
    assert fresh["session"] != first["session"]
    assert get(gateway, "/api/v1/sessions/current").status_code == 400
