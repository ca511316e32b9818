"""Script skills: the `# moltbot:` header, running a script safely, and the example."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.skills.errors import SkillError, SkillLoadError
from gateway.skills.script import (
    MAX_REPLY,
    ScriptSpec,
    json_answer,
    parse_header,
    run_script,
)
from tests.conftest import assert_dead

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "skills"
DATA = Path(__file__).resolve().parent / "data" / "knowledge"


pytestmark = pytest.mark.usefixtures("no_fd_leak")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty workspace with a skills/ folder, as the gateway would run scripts in."""
    (tmp_path / "ws" / "skills").mkdir(parents=True)
    return tmp_path / "ws"


def write_script(workspace: Path, name: str, body: str, *, executable: bool = True) -> Path:
    path = workspace / "skills" / name
    path.write_text(textwrap.dedent(body).lstrip("\n"), encoding="utf-8")
    if executable:
        path.chmod(0o755)
    return path


def spec_for(path: Path, **changes: object) -> ScriptSpec:
    spec = parse_header(path)
    return ScriptSpec(**{**spec.__dict__, **changes})  # type: ignore[arg-type]


# --- header ---------------------------------------------------------------------------------


def test_header_all_keys(workspace: Path) -> None:
    path = write_script(workspace, "convert.sh", """
        #!/bin/sh
        # A comment that is not a header line.
        # moltbot: intent=file_process
        # moltbot: keywords=Convert, 转换 ,, PDF
        # moltbot: command=/convert
        # moltbot: description=Convert a document
        # moltbot: timeout=2.5
        echo hi
    """)
    assert parse_header(path) == ScriptSpec(
        path=path, intent="file_process", keywords=("convert", "转换", "pdf"),
        command="/convert", description="Convert a document", timeout=2.5)


def test_header_defaults(workspace: Path) -> None:
    path = write_script(workspace, "hello.sh", "#!/bin/sh\necho hi\n")
    assert parse_header(path, default_timeout=7) == ScriptSpec(
        path=path, intent="hello", keywords=(), command=None, description="", timeout=7)


def test_header_other_comment_styles_and_keyword_lines(workspace: Path) -> None:
    path = write_script(workspace, "tool.js", """
        #!/usr/bin/env node
        // moltbot: intent=js_tool
        -- moltbot: keywords=one, 二
        //moltbot:keywords=three
    """)
    spec = parse_header(path)
    assert (spec.intent, spec.keywords) == ("js_tool", ("one", "二", "three"))


def test_header_after_first_lines_is_ignored(workspace: Path) -> None:
    path = write_script(workspace, "late.sh", "#!/bin/sh\n" + "echo\n" * 40 + "# moltbot: x=1\n")
    assert parse_header(path).intent == "late"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("echo no shebang\n", r"no shebang: .*`#!/bin/sh` or `#!/usr/bin/env python3`"),
        ("#!/bin/sh\n# moltbot: color=red\n",
         r"line 2: unknown header key 'color'; use one of intent, keywords, command, "
         r"description, timeout"),
        ("#!/bin/sh\n# moltbot: intent\n", r"line 2: expected `# moltbot: key=value`"),
        ("#!/bin/sh\n# moltbot: timeout=soon\n",
         r"line 2: timeout='soon' is not a number of seconds above 0; write e\.g\. timeout=10"),
        ("#!/bin/sh\n# moltbot: timeout=0\n", r"line 2: timeout='0' is not a number of seconds"),
        ("#!/bin/sh\n# moltbot: timeout=inf\n",
         r"line 2: timeout='inf' is not a number of seconds"),
        ("#!/bin/sh\n# moltbot: command=wc\n",
         r"line 2: command='wc' must be a slash and one word .*, e\.g\. command=/wc"),
        ("#!/bin/sh\n# moltbot: command=/two words\n",
         r"line 2: command='/two words' must be a slash"),
        ("#!/bin/sh\n# moltbot: intent=two words\n",
         r"line 2: intent='two words' must be one word"),
        ("#!/bin/sh\n# moltbot: intent=a\n# moltbot: intent=b\n",
         r"line 3: intent is already set on line 2; keep one of the two lines"),
    ],
)
def test_header_errors_say_how_to_fix(workspace: Path, body: str, problem: str) -> None:
    path = write_script(workspace, "x.sh", body)
    with pytest.raises(SkillLoadError, match=r"^skills/x\.sh: " + problem) as caught:
        parse_header(path)
    assert caught.value.path == path
    assert str(caught.value) == f"skills/x.sh: {caught.value.problem}"


def test_not_executable_says_chmod(workspace: Path) -> None:
    path = write_script(workspace, "x.sh", "#!/bin/sh\necho hi\n", executable=False)
    with pytest.raises(SkillLoadError, match=r"not executable; run `chmod \+x skills/x\.sh`"):
        parse_header(path)


def test_file_name_that_is_no_intent(workspace: Path) -> None:
    path = write_script(workspace, "my skill.sh", "#!/bin/sh\necho hi\n")
    with pytest.raises(SkillLoadError, match=r"add a line `# moltbot: intent=word`"):
        parse_header(path)


# --- running --------------------------------------------------------------------------------


def test_message_on_stdin_and_ids_in_environment(workspace: Path) -> None:
    path = write_script(workspace, "echo.sh", """
        #!/bin/sh
        cat > received.json
        env | grep -E '^(MOLTBOT_|SECRET_)' | sort
        pwd
    """)
    msg = {"text": "你好 world", "id": "m1", "chat": "c1", "channel": "http",
           "sender": "alice", "session": "s1",
           "files": [{"name": "a.md", "media_type": "text/markdown", "size": 1,
                      "path": str(workspace / "files" / "a.md")}]}
    os.environ["SECRET_API_KEY"] = "do-not-pass"
    try:
        reply = run_script(parse_header(path), msg, workspace=workspace,
                           env={"MOLTBOT_EXTRA": "yes"})
    finally:
        del os.environ["SECRET_API_KEY"]
    assert reply.splitlines() == [
        "MOLTBOT_CHANNEL=http", "MOLTBOT_CHAT=c1", "MOLTBOT_EXTRA=yes",
        f"MOLTBOT_FILES={workspace}/files/a.md", f"MOLTBOT_HOME={workspace}",
        "MOLTBOT_MSG_ID=m1", "MOLTBOT_SENDER=alice", "MOLTBOT_SESSION=s1", str(workspace)]
    raw = (workspace / "received.json").read_bytes()
    assert "你好".encode() in raw  # UTF-8, not \u escapes
    assert json.loads(raw) == msg


def test_output_json_answers_with_files(workspace: Path) -> None:
    path = write_script(workspace, "report.sh", """
        #!/bin/sh
        # moltbot: output=json
        printf '%s' "$MOLTBOT_FILES" > seen.txt
        echo '{"reply": "done", "files": ["out/r.csv"]}'
    """)
    spec = parse_header(path)
    assert spec.output == "json"
    two = [{"path": "/w/a b.md"}, {"path": "/w/c.md"}]
    out = run_script(spec, {"text": "x", "files": two}, workspace=workspace)
    assert json_answer(spec, out) == ("done", ["out/r.csv"])
    assert (workspace / "seen.txt").read_text() == "/w/a b.md\n/w/c.md"  # one path a line
    assert json_answer(spec, '{"files": ["a"]}') == ("", ["a"])  # a file alone answers
    for bad in ("not json", "[]", '{"reply": ""}', '{"reply": 1}', '{"files": "a"}',
                '{"reply": "x", "files": [1]}'):
        with pytest.raises(SkillError, match="output=json"):
            json_answer(spec, bad)
    wrong = write_script(workspace, "wrong.sh", "#!/bin/sh\n# moltbot: output=xml\n")
    with pytest.raises(SkillLoadError, match="output='xml' must be text or json"):
        parse_header(wrong)


def test_missing_ids_are_empty(workspace: Path) -> None:
    path = write_script(workspace, "ids.sh", """
        #!/bin/sh
        set -u
        echo "[$MOLTBOT_MSG_ID][$MOLTBOT_SESSION]"
    """)
    assert run_script(parse_header(path), {"text": "x"}, workspace=workspace) == "[][]"


def test_message_text_is_only_data(workspace: Path) -> None:
    sentinel = workspace / "sentinel"
    sentinel.write_text("still here")
    path = write_script(workspace, "quiet.sh", "#!/bin/sh\ncat >/dev/null\necho done\n")
    text = f"x; rm -rf {sentinel} && rm -rf {workspace} $(rm {sentinel}) `rm {sentinel}`"
    assert run_script(parse_header(path), {"text": text}, workspace=workspace) == "done"
    assert sentinel.read_text() == "still here"


def test_script_need_not_read_stdin(workspace: Path) -> None:
    path = write_script(workspace, "deaf.sh", "#!/bin/sh\necho ok\n")
    msg = {"text": "x" * 1_000_000}  # more than a pipe buffer: writing it must not fail
    assert run_script(parse_header(path), msg, workspace=workspace) == "ok"


def test_non_zero_exit_tells_the_code_and_keeps_stderr_for_the_log(workspace: Path) -> None:
    path = write_script(workspace, "fail.sh", """
        #!/bin/sh
        # moltbot: intent=broken
        i=0
        while [ $i -lt 1000 ]; do echo "noise line $i" >&2; i=$((i + 1)); done
        echo "disk full at /home/owner/private" >&2
        exit 3
    """)
    with pytest.raises(SkillError) as caught:
        run_script(parse_header(path), {"text": ""}, workspace=workspace)
    assert str(caught.value) == "skill broken failed with exit code 3"  # no stderr for senders
    assert caught.value.detail.endswith("disk full at /home/owner/private")
    assert "noise line 0\n" not in caught.value.detail  # bounded: only the end is kept
    assert len(caught.value.detail) <= 4000


def test_timeout_kills_script_and_its_child(workspace: Path) -> None:
    path = write_script(workspace, "slow.sh", """
        #!/bin/sh
        # moltbot: intent=slow
        sleep 30 &
        echo $! > child.pid
        wait
        echo never
    """)
    with pytest.raises(SkillError, match=r"^skill slow took longer than 0\.5s and was stopped$"):
        run_script(spec_for(path, timeout=0.5), {"text": ""}, workspace=workspace)
    assert_dead(int((workspace / "child.pid").read_text()))


def test_timeout_when_script_closes_its_output(workspace: Path) -> None:
    path = write_script(workspace, "closer.sh", """
        #!/bin/sh
        # moltbot: intent=closer
        exec >/dev/null 2>&1
        echo $$ > leader.pid
        sleep 30
    """)
    with pytest.raises(SkillError, match=r"took longer than 0\.5s"):
        run_script(spec_for(path, timeout=0.5), {"text": ""}, workspace=workspace)
    assert_dead(int((workspace / "leader.pid").read_text()))


def test_empty_output_is_an_error(workspace: Path) -> None:
    path = write_script(workspace, "mute.sh", "#!/bin/sh\n# moltbot: intent=mute\necho '  '\n")
    with pytest.raises(SkillError, match=r"^skill mute printed no reply$"):
        run_script(parse_header(path), {"text": ""}, workspace=workspace)


def test_reply_is_capped(workspace: Path) -> None:
    path = write_script(workspace, "loud.sh", """
        #!/bin/sh
        head -c 200000 /dev/zero | tr '\\0' 'a'
    """)
    reply = run_script(parse_header(path), {"text": ""}, workspace=workspace)
    assert reply == "a" * MAX_REPLY


def test_script_that_cannot_start(workspace: Path) -> None:
    path = write_script(workspace, "ghost.sh", "#!/no/such/interpreter\necho hi\n")
    with pytest.raises(SkillError, match=r"^skill ghost could not start \("):
        run_script(parse_header(path), {"text": ""}, workspace=workspace)


def test_waiting_is_cooperative_under_gevent(workspace: Path) -> None:
    """The script waits for a flag only another greenlet sets: a blocking run would time out."""
    write_script(workspace, "waits.sh", """
        #!/bin/sh
        while [ ! -e flag ]; do sleep 0.01; done
        echo saw the flag
    """)
    code = textwrap.dedent("""
        from gevent import monkey
        monkey.patch_all(queue=False)
        import sys
        from pathlib import Path
        import gevent
        from gateway.skills.script import parse_header, run_script
        from gateway.skills.errors import SkillError
        ws = Path(sys.argv[1])
        spec = parse_header(ws / "skills" / "waits.sh")
        gevent.spawn(lambda: (gevent.sleep(0.05), (ws / "flag").touch()))
        print(run_script(spec, {"text": ""}, workspace=ws))
        closer = ws / "skills" / "closer.sh"
        closer.write_text("#!/bin/sh\\nexec >/dev/null 2>&1\\nsleep 30\\n")
        closer.chmod(0o755)
        try:
            run_script(parse_header(closer, 0.5), {"text": ""}, workspace=ws)
        except SkillError as e:
            print(e)
    """)
    result = subprocess.run([sys.executable, "-c", code, str(workspace)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "saw the flag", "skill closer took longer than 0.5s and was stopped"]


# --- the example ----------------------------------------------------------------------------


@pytest.fixture
def example_workspace(workspace: Path) -> Path:
    """A workspace holding the example script and a text file."""
    shutil.copy2(EXAMPLES / "file_processor.sh", workspace / "skills" / "file_processor.sh")
    (workspace / "notes.txt").write_text("one two three\n四 five\n", encoding="utf-8")
    return workspace


def test_example_is_executable_with_a_valid_header() -> None:
    wc = parse_header(EXAMPLES / "file_processor.sh")
    assert (wc.intent, wc.command, wc.keywords) == ("file_process", "/wc", ("word count", "字数"))


def test_file_processor_counts_a_file(example_workspace: Path) -> None:
    spec = parse_header(example_workspace / "skills" / "file_processor.sh")

    def ask(text: str) -> str:
        return run_script(spec, {"text": text}, workspace=example_workspace,
                          env={"LANG": "C.UTF-8"})

    assert ask("notes.txt") == "notes.txt: 2 lines, 5 words, 21 characters"
    assert ask("字数 notes.txt") == "notes.txt: 2 lines, 5 words, 21 characters"
    assert ask("/wc notes.txt") == "notes.txt: 2 lines, 5 words, 21 characters"
    assert ask("").startswith("usage: /wc <file in the workspace>")
    assert ask("/etc/passwd").startswith("refused: give a path inside the workspace")
    assert ask("knowledge/../../secret").startswith('refused: ".." is not allowed')
    assert ask("missing.txt") == "no such file in the workspace: missing.txt"
    outside = example_workspace.parent / "private.key"
    outside.write_text("-----BEGIN PRIVATE KEY-----\n", encoding="utf-8")
    (example_workspace / "innocent.txt").symlink_to(outside)
    refused = ask("/wc innocent.txt")
    assert refused.startswith("refused: innocent.txt leads outside the workspace")
    assert "lines" not in refused
