"""The example skill skills/doc_parser.py: the guide's document-to-JSON tool, and `/parse`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core.router import route
from gateway.skills.catalog import SkillLoader, SkillSet
from gateway.skills.hostpool import SkillHostPool

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "knowledge"


@pytest.fixture
def example_workspace(tmp_path: Path) -> Path:
    """A workspace holding the example skill and a few documents."""
    workspace = tmp_path / "ws"
    (workspace / "skills").mkdir(parents=True)
    (workspace / "knowledge").mkdir()
    shutil.copy2(ROOT / "skills" / "doc_parser.py", workspace / "skills" / "doc_parser.py")
    shutil.copy(DATA / "product_specs.csv", workspace / "knowledge" / "product_specs.csv")
    (workspace / "notes.txt").write_text("one two three\n四 five\n", encoding="utf-8")
    (workspace / "faq.md").write_text(textwrap.dedent("""
        ---
        tags: [faq]
        ---
        Intro text.

        # FAQ

        ## Install
        Run the installer.

        ```
        # not a heading
        ```

        ## Ports
        18789.
    """).lstrip("\n"), encoding="utf-8")
    return workspace


@pytest.fixture
def skills(example_workspace: Path) -> Iterator[SkillSet]:
    """The workspace's skills, loaded by a real skill host as the gateway loads them."""
    hosts = SkillHostPool(example_workspace, 1, {})
    try:
        yield SkillLoader(example_workspace, hosts, default_timeout=5.0).build(SkillSet())
    finally:
        hosts.close()


def run_tool(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=workspace, capture_output=True,
                          text=True, timeout=60)


def test_doc_parser_input_output(example_workspace: Path) -> None:
    """The guide's call, as written: `python skills/doc_parser.py --input f --output out`."""
    result = run_tool(example_workspace, "skills/doc_parser.py", "--input", "faq.md",
                      "--output", "output.json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrote output.json")
    doc = json.loads((example_workspace / "output.json").read_text(encoding="utf-8"))
    assert doc == {"source": "faq.md", "title": "FAQ", "sections": [
        {"heading": "", "text": "Intro text."},
        {"heading": "FAQ", "text": ""},
        {"heading": "Install", "text": "Run the installer.\n\n```\n# not a heading\n```"},
        {"heading": "Ports", "text": "18789."}]}

    csv_result = run_tool(example_workspace, "skills/doc_parser.py",
                          "--input", "knowledge/product_specs.csv")
    assert csv_result.returncode == 0, csv_result.stderr
    table = json.loads(csv_result.stdout)
    assert table["rows"] and set(table["rows"][0]) == set(table["rows"][-1])


def test_doc_parser_reports_bad_input(example_workspace: Path) -> None:
    result = run_tool(example_workspace, "skills/doc_parser.py", "--input", "faq.pdf",
                      "--output", "o.json")
    assert result.returncode == 1
    assert result.stderr.startswith("doc_parser: faq.pdf: unsupported file type '.pdf'; "
                                    "use one of .md")


def test_doc_parser_says_which_python_it_needs(example_workspace: Path) -> None:
    """Run by a Python without Moltbot (here: no site-packages), it names the fix."""
    result = run_tool(example_workspace, "-S", "skills/doc_parser.py", "--input", "faq.md")
    assert result.returncode == 1
    assert "moltbot_sdk is not installed for" in result.stderr
    assert "run this with the Python Moltbot is installed in" in result.stderr


def test_doc_parser_as_a_skill(example_workspace: Path, skills: SkillSet) -> None:
    assert skills.errors == {}
    handler = skills.by_command("parse")
    assert handler is not None
    assert (handler.kind, handler.spec.intent, handler.source) == (
        "python", "doc_parse", "skills/doc_parser.py")
    assert handler.spec.description
    routed = route("/parse faq.md", skills)
    assert (routed.kind, routed.name) == ("skill", "doc_parse")

    (example_workspace / "scan.pdf").write_bytes(b"%PDF-1.7\n")
    (example_workspace / "escape.md").symlink_to(DATA / "faq_en.md")
    replies = {
        "faq.md": 'faq.md: "FAQ", 4 sections: FAQ, Install, Ports',
        "/parse faq.md": 'faq.md: "FAQ", 4 sections: FAQ, Install, Ports',
        "notes.txt": "notes.txt: 1 paragraphs, 5 words",
        "knowledge/product_specs.csv": "product_specs.csv: 8 rows; columns: name, category, "
                                       "price, description",
        "": "usage: /parse <file in the workspace>, e.g. /parse knowledge/faq.md",
        "../x.md": "refused: give a path inside the workspace, e.g. knowledge/faq.md, not ../x.md",
        "missing.md": "no such file in the workspace: missing.md",
        # named as the sender gave it, not by where the workspace is
        "scan.pdf": "scan.pdf: unsupported file type '.pdf'; use one of .md, .markdown, .csv, .txt",
        "escape.md": "refused: escape.md leads outside the workspace",
    }
    assert {text: handler.call({"text": text, "sender": "me"}).text for text in replies} == replies


def test_the_guides_process_document_runs_inside_a_skill(example_workspace: Path) -> None:
    """The guide's `process_document`, as written (`"python", "skills/doc_parser.py"`), in a
    skill: the skill host's `python` is the gateway's own, so doc_parser finds moltbot_sdk
    whatever Python the system has on PATH."""
    (example_workspace / "skills" / "documents.py").write_text(textwrap.dedent('''
        import subprocess

        from moltbot_sdk import Skill, context


        def process_document(file_path):
            cmd = [
                "python",
                "skills/doc_parser.py",
                "--input", file_path,
                "--output", "output.json"
            ]
            subprocess.run(cmd, check=True)
            return "output.json"


        class Documents(Skill):
            @context.handle(intent="document", command="document")
            def run(self, msg):
                return {"reply": open(process_document(msg["text"]), encoding="utf-8").read()}
    '''), encoding="utf-8")
    hosts = SkillHostPool(example_workspace, 1, {})
    try:
        skills = SkillLoader(example_workspace, hosts, default_timeout=20.0).build(SkillSet())
        handler = skills.by_command("document")
        assert skills.errors == {} and handler is not None
        reply = handler.call({"text": "faq.md", "sender": "me"}).text
    finally:
        hosts.close()
    parsed = json.loads(reply)
    assert parsed["title"] == "FAQ"
    assert [s["heading"] for s in parsed["sections"] if s["heading"]] == [
        "FAQ", "Install", "Ports"]
