"""Files that travel with messages, part by part: the inbox (names made safe, caps, private
files, nothing left by a refusal), what the model is given of them, and the files a skill may
answer with."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest

from gateway.core.files_for_model import view_for_model
from gateway.core.inbox import Caps, FileRefused, Inbox, media_type_of, safe_name
from gateway.core.message import Attachment
from gateway.core.skill_files import ReplyFileRefused, for_skill, reply_files

CAPS = Caps(file=1000, message=1500)


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(("sent", "kept"), [
    ("notes.md", "notes.md"),
    ("../../etc/passwd", "passwd"),
    ("..\\..\\boot.ini", "boot.ini"),
    (".bashrc", "bashrc"),
    ("...", "file"),
    ("", "file"),
    ("/", "file"),
    ("a\x00b\nc\u202e.txt", "a_b_c.txt"),
    ('what?<now>|"x".csv', "what__now___x_.csv"),
    ("报告 2024.md", "报告 2024.md"),
    ("trailing. ", "trailing"),
])
def test_names_are_made_safe(sent: str, kept: str) -> None:
    assert safe_name(sent) == kept


def test_a_long_name_is_cut_and_keeps_its_extension() -> None:
    name = safe_name("x" * 300 + ".markdown")
    assert name.endswith(".markdown") and len(name.encode()) <= 120
    cjk = safe_name("文" * 100 + ".md")
    assert cjk.endswith(".md") and len(cjk.encode()) <= 120
    cjk.encode().decode()  # not cut inside a character


def test_media_types_are_the_senders_or_guessed() -> None:
    assert media_type_of("a.md", None) == "text/markdown"
    assert media_type_of("a.md", "application/octet-stream") == "text/markdown"
    assert media_type_of("a.bin", "image/png; q=1") == "image/png"
    assert media_type_of("a", "not a type") == "application/octet-stream"


def test_files_arrive_private_named_by_message_and_hashed(tmp_path: Path) -> None:
    receipt = Inbox(tmp_path).receive("m1", CAPS)
    with receipt.open("../notes.md", "text/markdown") as f:
        f.write(b"# Title\n")
    receipt.add_base64("notes.md", None, base64.b64encode(b"second").decode())
    first, second = receipt.finish()
    assert first.name == "notes.md" and first.media_type == "text/markdown"
    assert first.path.startswith("files/inbox/") and first.path.endswith("/m1-notes.md")
    assert second.path.endswith("/m1-2-notes.md")  # the same name twice: both kept
    assert (tmp_path / second.path).read_bytes() == b"second" and second.size == 6
    assert first.sha256 == hashlib.sha256(b"# Title\n").hexdigest()
    mode = stat.S_IMODE(os.stat(tmp_path / first.path).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat((tmp_path / first.path).parent).st_mode) == 0o700


def test_a_file_over_its_cap_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    receipt = Inbox(tmp_path).receive("m2", CAPS)
    with receipt.open("small.txt", None) as f:
        f.write(b"x" * 900)
    with pytest.raises(FileRefused) as refused, receipt.open("big.bin", None) as f:
        f.write(b"x" * 1001)
    assert refused.value.code == "payload_too_large"
    assert "1000 bytes (gateway.max_file_bytes)" in refused.value.message
    receipt.discard()
    assert everything_under(tmp_path) == []


def test_files_over_the_message_cap_together_are_refused(tmp_path: Path) -> None:
    receipt = Inbox(tmp_path).receive("m3", CAPS)
    with pytest.raises(FileRefused) as refused:
        for n in range(2):
            with receipt.open(f"{n}.txt", None) as f:
                f.write(b"x" * 800)
    assert "1500 bytes together (gateway.max_upload_bytes)" in refused.value.message
    receipt.discard()
    assert everything_under(tmp_path) == []


def test_bad_base64_is_a_clear_bad_request(tmp_path: Path) -> None:
    receipt = Inbox(tmp_path).receive("m4", CAPS)
    with pytest.raises(FileRefused) as refused:
        receipt.add_base64("a.txt", None, "not base64!")
    assert refused.value.code == "bad_request" and "base64" in refused.value.message
    with pytest.raises(FileRefused) as large:
        receipt.add_base64("a.txt", None, "QUFB" * 400)  # 1,200 bytes decoded
    assert large.value.code == "payload_too_large"
    receipt.discard()
    assert everything_under(tmp_path) == []


def stored(root: Path, name: str, data: bytes, media_type: str) -> Attachment:
    path = root / "files" / "inbox" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Attachment(name, media_type, len(data), f"files/inbox/{name}")


def test_the_model_gets_text_documents_as_text_and_hears_of_the_rest(tmp_path: Path) -> None:
    doc = stored(tmp_path, "notes.md", "# Plan\nship it 发布".encode(), "text/markdown")
    image = stored(tmp_path, "cat.png", b"\x89PNG fake", "image/png")
    pdf = stored(tmp_path, "r.pdf", b"%PDF-1.4", "application/pdf")
    latin1 = stored(tmp_path, "old.txt", "caf\xe9".encode("latin-1"), "text/plain")
    view = view_for_model("summarise", (doc, image, pdf, latin1), tmp_path, model="llama2",
                          vision=False, budget=1000)
    assert view.text.startswith("summarise\n\n")
    assert "# Plan\nship it 发布" in view.text
    assert "cannot see images" in view.text and "not read" in view.text
    assert view.images == []
    assert len(view.notes) == 3 and "cat.png is an image" in view.notes_line()
    assert "r.pdf (application/pdf) is a document type that is not read" in view.notes_line()
    assert "old.txt is not UTF-8 text" in view.notes_line()

    seeing = view_for_model("", (image,), tmp_path, model="llava", vision=True, budget=1000)
    assert seeing.images == [{"media_type": "image/png",
                              "data": base64.b64encode(b"\x89PNG fake").decode()}]
    assert seeing.notes == [] and seeing.user_turn()["images"] == seeing.images


def test_a_document_longer_than_the_budget_is_cut_and_says_so(tmp_path: Path) -> None:
    doc = stored(tmp_path, "long.txt", b"word " * 2000, "text/plain")
    view = view_for_model("", (doc,), tmp_path, model="m", vision=False, budget=100)
    kept = view.text.split(":]\n", 1)[1].split("\n[... the rest", 1)[0]
    assert 0 < len(kept) <= 400
    assert "does not fit in the context budget" in view.text
    assert view.notes == ["only the first part of long.txt fitted in the model's context"]


def test_a_skill_gets_absolute_paths(tmp_path: Path) -> None:
    doc = stored(tmp_path, "a.txt", b"hi", "text/plain")
    assert for_skill((doc,), tmp_path) == [{"name": "a.txt", "media_type": "text/plain",
                                            "size": 2, "path": str(tmp_path / doc.path)}]


def test_a_skill_may_answer_with_workspace_files_only(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.csv").write_text("a,b\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "moltbot.db").write_text("secret")
    (tmp_path / "config.yaml").write_text("auth: {}")
    (tmp_path / ".env").write_text("KEY=1")
    (tmp_path / "out" / "escape").symlink_to("/etc/hostname")
    files = reply_files(["out/report.csv", str(tmp_path / "out" / "report.csv")], tmp_path)
    assert [f.name for f in files] == ["report.csv", "report.csv"]
    assert files[0].path == "out/report.csv" and files[0].media_type == "text/csv"
    assert files[0].size == 4 and len(files[0].sha256) == 64
    for bad, why in (("/etc/hostname", "outside the workspace"),
                     ("out/escape", "outside the workspace"),
                     ("../x", "does not exist"),
                     ("data/moltbot.db", "never sent"), ("config.yaml", "never sent"),
                     (".env", "never sent"), ("out", "not a file")):
        with pytest.raises(ReplyFileRefused) as refused:
            reply_files([bad], tmp_path)
        assert why in str(refused.value), bad
        assert "/etc" not in str(refused.value)  # the path is for the log, not the sender
    with pytest.raises(ReplyFileRefused):
        reply_files("out/report.csv", tmp_path)  # a string, not a list
