"""Skills in the real gateway: the guide's example, hot reload, broken files, runaway skills."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT, GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer

GUIDE_EXAMPLE = '''\
from moltbot_sdk import Skill, context
class FAQHandler(Skill):
    def __init__(self):
        self.knowledge_base = load_markdown("knowledge/faq.md")
    @context.handle(intent="faq_query")
    def process_query(self, msg):
        question = msg["text"].lower()
        answer = self.knowledge_base.search(question)
        return {"reply": answer or "未找到相关答案"}
'''

FAQ = """# FAQ

## How do I reset my password?
Open Settings, choose Security and press "Reset password".

## 如何安装网关?
运行 install.sh 脚本即可完成安装。
"""


def wait_until(check: Callable[[], Any], deadline_s: float = 15.0) -> Any:
    """Poll `check` until it returns something truthy (never a bare sleep to synchronise)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not true within {deadline_s}s")


def skills_api(gw: GatewayProcess) -> dict[str, Any]:
    return httpx.get(f"{gw.url}/api/v1/skills", headers=gw.headers, timeout=10).json()


def wait_for_skill(gw: GatewayProcess, intent: str) -> None:
    """Until the running gateway lists a handler for `intent` (after hot reload)."""
    wait_until(lambda: any(s["intent"] == intent for s in skills_api(gw)["skills"]))


@pytest.fixture
def workspace_gateway(home: Path, fake_model: FakeModelServer) -> Iterator[GatewayProcess]:
    """A gateway whose workspace has only what each test puts in it (no examples)."""
    (home / "skills").mkdir(parents=True)
    (home / "knowledge").mkdir()
    config = model_config(fake_model.url)
    config["skills"] = {"timeout": 2}
    config["tools"] = {"allowed_commands": ["echo"]}
    write_config(home, config)
    (home / "knowledge" / "faq.md").write_text(FAQ, encoding="utf-8")
    (home / "skills" / "auto_reply.py").write_text(GUIDE_EXAMPLE, encoding="utf-8")
    gw = GatewayProcess(home, free_port()).start()
    yield gw
    gw.stop()


def test_the_guides_example_runs_unchanged(workspace_gateway: GatewayProcess,
                                           fake_model: FakeModelServer) -> None:
    gw = workspace_gateway
    by_command = gw.post("/faq_query How do I reset my password?").json()
    assert by_command["reply"] == 'Open Settings, choose Security and press "Reset password".'
    installed = gw.post("/faq_query 如何安装网关").json()["reply"]
    assert installed == "运行 install.sh 脚本即可完成安装。"
    assert gw.post("/faq_query zzz qqq").json()["reply"] == "未找到相关答案"

    # Without a command, the model is offered the skill as a tool and chooses it.
    fake_model.tool_call_when(contains="how do i", name="faq_query",
                              arguments={"text": "how do i reset my password"})
    chosen = gw.post("How do I get a new password?").json()
    assert chosen["reply"].startswith("Open Settings")
    offered = fake_model.requests[-1]["body"]["tools"]
    assert offered[0]["function"]["name"] == "faq_query"
    trace = run_cli(gw.home, "trace", chosen["id"]).stdout
    assert "route=skill:faq_query" in trace  # what really answered, not chat:model
    assert "skill:faq_query (chosen by the model)" in trace
    assert "ok  faq_query (skills/auto_reply.py)" in trace.splitlines()[-1]


def test_chat_answers_carry_knowledge_and_name_their_source(
        workspace_gateway: GatewayProcess, fake_model: FakeModelServer) -> None:
    reply = workspace_gateway.post("reset password settings security").json()["reply"]
    assert reply.endswith("Sources: knowledge/faq.md (FAQ > How do I reset my password?)")
    system = [m["content"] for m in fake_model.requests[-1]["body"]["messages"]
              if m["role"] == "system"]
    assert any("Reset password" in s for s in system)
    plain = workspace_gateway.post("hello there").json()["reply"]
    assert plain == "echo: hello there"


def test_drop_change_break_and_delete_a_skill(workspace_gateway: GatewayProcess) -> None:
    gw = workspace_gateway
    skill = gw.home / "skills" / "greeter.py"
    skill.write_text(
        "from moltbot_sdk import Skill, context\n"
        "class Greeter(Skill):\n"
        "    @context.handle(intent='greet', keywords=['say hi'], description='Greets')\n"
        "    def run(self, msg):\n"
        "        return 'hi ' + msg['chat']\n", encoding="utf-8")
    saved = time.monotonic()
    reply = wait_until(lambda: (r := gw.post("please say hi", chat="g").json())["reply"]
                       .startswith("hi ") and r)
    print(f"\nnew skill answered {time.monotonic() - saved:.2f}s after the file was saved")
    assert reply["reply"] == "hi g"

    skill.write_text(skill.read_text(encoding="utf-8").replace("'hi '", "'hello '"),
                     encoding="utf-8")
    wait_until(lambda: gw.post("/greet", chat="g").json()["reply"] == "hello g")

    skill.write_text("class Broken(:\n", encoding="utf-8")
    error = wait_until(lambda: skills_api(gw)["errors"].get("skills/greeter.py"))
    assert "syntax error on line 1" in error and "previous version keeps running" in error
    assert gw.post("/greet", chat="g").json()["reply"] == "hello g"
    listed = run_cli(gw.home, "skills", "list")
    assert listed.returncode == 1 and "ERROR skills/greeter.py: syntax error" in listed.stdout
    assert "/faq_query" in listed.stdout

    skill.unlink()
    wait_until(lambda: gw.post("/greet", chat="g").json()["reply"].startswith(
        "There is no command /greet."))  # gone: answered with the commands, not the model
    assert "skills/greeter.py" not in skills_api(gw)["errors"]


def test_crashing_and_runaway_skills_never_take_the_gateway_down(
        workspace_gateway: GatewayProcess) -> None:
    gw = workspace_gateway
    (gw.home / "skills" / "bad.py").write_text(
        "from moltbot_sdk import Skill, context\n"
        "class Bad(Skill):\n"
        "    @context.handle(intent='crash')\n"
        "    def crash(self, msg):\n"
        "        raise ValueError('secret internals')\n"
        "    @context.handle(intent='spin')\n"
        "    def spin(self, msg):\n"
        "        while True:\n"
        "            pass\n", encoding="utf-8")
    wait_for_skill(gw, "spin")

    crash = gw.post("/crash")
    assert crash.status_code == 500
    error = crash.json()["error"]
    assert error["code"] == "skill_error" and crash.json()["id"] in error["message"]
    assert "secret internals" not in error["message"]
    assert "secret internals" in (gw.home / "data" / "logs" / "error.log").read_text()

    spun: list[httpx.Response] = []
    spinner = threading.Thread(target=lambda: spun.append(gw.post("/spin", chat="spin")))
    spinner.start()
    others = [gw.post(f"meanwhile {i}", chat=f"other-{i}") for i in range(3)]
    spinner.join(30)
    assert all(r.status_code == 200 for r in others)
    assert spun[0].status_code == 500
    assert "took longer than 2s and was stopped" in spun[0].json()["error"]["message"]
    # the killed worker was replaced: skills keep answering
    assert gw.post("/faq_query reset my password").json()["reply"].startswith("Open Settings")


def test_skills_use_tools_within_their_limits(workspace_gateway: GatewayProcess) -> None:
    gw = workspace_gateway
    (gw.home / "skills" / "tooluser.py").write_text(
        "from moltbot_sdk import Skill, context\n"
        "class ToolUser(Skill):\n"
        "    @context.handle(intent='peek')\n"
        "    def peek(self, msg):\n"
        "        try:\n"
        "            return context.tool('files', action='read', path=msg['text'])[:20]\n"
        "        except Exception as e:\n"
        "            return 'refused: ' + str(e)\n"
        "    @context.handle(intent='run')\n"
        "    def run(self, msg):\n"
        "        try:\n"
        "            return context.tool('command', argv=msg['text'].split())\n"
        "        except Exception as e:\n"
        "            return 'refused: ' + str(e)\n", encoding="utf-8")
    wait_for_skill(gw, "peek")
    assert gw.post("/peek knowledge/faq.md").json()["reply"] == FAQ[:20]
    escape = gw.post("/peek ../config.yaml").json()
    assert escape["reply"].startswith("refused:") and ".." in escape["reply"]
    trace = json.loads(run_cli(gw.home, "trace", escape["id"], "--json").stdout)
    assert any(s["step"] == "tool:files" and s["outcome"] == "refused" for s in trace["spans"])
    assert "hi; rm -rf" in gw.post("/run echo hi; rm -rf *").json()["reply"]
    assert "not in tools.allowed_commands" in gw.post("/run rm -rf /tmp/x").json()["reply"]


def test_script_skill_by_keyword(workspace_gateway: GatewayProcess) -> None:
    gw = workspace_gateway
    shutil.copy2(ROOT / "skills" / "file_processor.sh", gw.home / "skills")
    wait_for_skill(gw, "file_process")
    reply = gw.post("word count knowledge/faq.md").json()["reply"]
    assert reply.startswith("knowledge/faq.md:") and "lines" in reply


def test_config_edits_apply_and_bad_ones_are_refused(workspace_gateway: GatewayProcess,
                                                     fake_model: FakeModelServer) -> None:
    gw = workspace_gateway
    path = gw.home / "config.yaml"
    good = yaml.safe_load(path.read_text(encoding="utf-8"))
    path.write_text("gateway: {port: nope}\n", encoding="utf-8")
    problem = wait_until(lambda: skills_api(gw)["config_error"])
    assert "gateway.port" in problem
    assert gw.post("still here").json()["reply"] == "echo: still here"

    good["models"]["llama2"]["max_tokens"] = 7
    path.write_text(yaml.safe_dump(good), encoding="utf-8")
    wait_until(lambda: skills_api(gw)["config_error"] is None)
    gw.post("now shorter")
    assert fake_model.requests[-1]["body"]["options"]["num_predict"] == 7


def test_the_model_calls_offered_tools_and_sees_refusals(home: Path,
                                                         fake_model: FakeModelServer) -> None:
    config = model_config(fake_model.url)
    config["tools"] = {"offer_to_model": ["files"]}
    write_config(home, config)
    (home / "files").mkdir(parents=True)
    (home / "files" / "notes.txt").write_text("buy milk", encoding="utf-8")
    fake_model.tool_call_when(contains="read my notes", name="files",
                              arguments={"action": "read", "path": "files/notes.txt"})
    fake_model.tool_call_when(contains="read the secrets", name="files",
                              arguments={"action": "read", "path": "../../etc/passwd"})
    gw = GatewayProcess(home, free_port()).start()
    try:
        notes = gw.post("please read my notes").json()
        assert notes["reply"] == "tool said: buy milk"
        offered = {t["function"]["name"] for t in fake_model.requests[-1]["body"]["tools"]}
        assert "files" in offered and "command" not in offered
        spans = json.loads(run_cli(home, "trace", notes["id"], "--json").stdout)["spans"]
        assert [s["step"] for s in spans if s["step"] in ("model", "tool:files")] == \
            ["model", "tool:files", "model"]

        refused = gw.post("read the secrets").json()
        assert refused["reply"].startswith("tool said: refused:")
        spans = json.loads(run_cli(home, "trace", refused["id"], "--json").stdout)["spans"]
        assert any(s["step"] == "tool:files" and s["outcome"] == "refused" for s in spans)
    finally:
        gw.stop()
