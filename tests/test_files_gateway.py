"""Files in and out through the real gateway: multipart uploads and WebSocket base64 frames
reach skills and the model, over-size and malformed ones are refused (after the guard chain)
and leave nothing on disk, skills answer with files the sender downloads, and the guide's
doc_parser answers a sent document with its JSON."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket

from tests.conftest import ROOT, GatewayProcess, free_port, model_config, run_cli, write_config
from tests.fakes.fake_model import FakeModelServer
from tests.skill_sources import report_skill

FILE_CAP = 64 * 1024
UPLOAD_CAP = 96 * 1024

SKILL = '''\
import json
from pathlib import Path
from moltbot_sdk import Skill, context

class Files(Skill):
    @context.handle(command="/files")
    def show(self, msg):
        seen = [dict(f, content=Path(f["path"]).read_text(errors="replace"))
                for f in msg["files"]]
        return {"reply": json.dumps({"text": msg["text"], "files": seen})}

    @context.handle(command="/leak")
    def leak(self, msg):
        return {"reply": "take this", "files": ["/etc/hostname"]}
'''


@pytest.fixture
def files_gateway(home: Path, fake_model: FakeModelServer) -> Iterator[GatewayProcess]:
    gw = start(home, fake_model)
    yield gw
    gw.stop()


def start(home: Path, fake_model: FakeModelServer, **model: Any) -> GatewayProcess:
    (home / "skills").mkdir(parents=True, exist_ok=True)
    (home / "knowledge").mkdir(exist_ok=True)
    (home / "skills" / "files_skill.py").write_text(SKILL, encoding="utf-8")
    (home / "skills" / "report.py").write_text(report_skill(), encoding="utf-8")
    shutil.copy(ROOT / "skills" / "doc_parser.py", home / "skills" / "doc_parser.py")
    config = model_config(fake_model.url, **model)
    config["gateway"] = {"max_file_bytes": FILE_CAP, "max_upload_bytes": UPLOAD_CAP}
    config["security"] = {"stranger_mode": "open"}
    config["channels"] = {"enterprise_im": {"bot_token": "im-bot-token"}}
    write_config(home, config)
    return GatewayProcess(home, free_port()).start()


def upload(gw: GatewayProcess, text: str, *files: tuple[str, bytes, str],
           headers: dict[str, str] | None = None, **fields: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/api/v1/messages", data={"text": text, **fields},
                      files=[("file", f) for f in files], timeout=30,
                      headers=gw.headers if headers is None else headers)


def inbox(gw: GatewayProcess) -> list[Path]:
    """Every file under files/inbox, hidden partial ones included."""
    return sorted(p for p in (gw.home / "files" / "inbox").rglob("*") if p.is_file())


def ws_connect(gw: GatewayProcess) -> websocket.WebSocket:
    return websocket.create_connection(f"ws://127.0.0.1:{gw.port}/ws", timeout=30,
                                       header=[f"Authorization: Bearer {gw.token}"])


def ws_final(ws: websocket.WebSocket, frame: dict[str, Any]) -> dict[str, Any]:
    ws.send(json.dumps(frame))
    while True:
        got = json.loads(ws.recv())
        if got["type"] in ("reply", "error"):
            return got


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_sent_file_reaches_the_skill_and_is_kept_with_the_message(
        files_gateway: GatewayProcess) -> None:
    gw = files_gateway
    r = upload(gw, "/files look", ("notes.md", "# Notes\nhello 你好\n".encode(), "text/markdown"),
               (".secret.txt", b"shh", "application/octet-stream"),
               ("../../etc/passwd", b"root:x:0:0", "text/plain"))
    assert r.status_code == 200, r.text
    seen = json.loads(r.json()["reply"])
    assert seen["text"] == "look"
    names = [(f["name"], f["media_type"], f["size"], f["content"]) for f in seen["files"]]
    assert names == [("notes.md", "text/markdown", 21, "# Notes\nhello 你好\n"),
                     ("secret.txt", "text/plain", 3, "shh"),
                     ("passwd", "text/plain", 10, "root:x:0:0")]
    kept = inbox(gw)
    assert [p.name for p in kept] == sorted(f"{r.json()['id']}-{n}" for n, *_ in names)
    for f in seen["files"]:
        path = Path(f["path"])
        assert path.is_absolute() and path.parent.parent == gw.home / "files" / "inbox"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    trace = httpx.get(f"{gw.url}/api/v1/messages/{r.json()['id']}/trace",
                      headers=gw.headers).json()
    assert [f["name"] for f in trace["files"]["in"]] == ["notes.md", "secret.txt", "passwd"]
    cli = run_cli(gw.home, "trace", r.json()["id"])
    assert "file in" in cli.stdout and "notes.md (text/markdown, 21 bytes)" in cli.stdout

    only_a_file = upload(gw, "", ("a.txt", b"just this", "text/plain"))
    assert only_a_file.status_code == 200  # a file alone is a message: the model hears of it
    assert "just this" in only_a_file.json()["reply"]


def test_uploads_over_the_caps_are_refused_after_the_chain_and_leave_nothing(
        files_gateway: GatewayProcess) -> None:
    gw = files_gateway
    big = ("big.bin", b"x" * (FILE_CAP + 1), "application/octet-stream")
    r = upload(gw, "hi", big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert f"{FILE_CAP} bytes (gateway.max_file_bytes)" in r.json()["error"]["message"]
    two = [(f"{n}.bin", b"x" * FILE_CAP, "application/octet-stream") for n in range(2)]
    together = upload(gw, "hi", *two)
    assert together.status_code == 413
    assert "gateway.max_upload_bytes" in together.json()["error"]["message"]
    body = upload(gw, "x" * (UPLOAD_CAP + 256 * 1024), two[0])  # the request as a whole
    assert body.status_code == 413 and "The request is larger than" in body.text
    stranger = upload(gw, "hi", big, headers={})
    assert stranger.status_code == 401  # a stranger learns nothing about the upload
    bad = httpx.post(f"{gw.url}/api/v1/messages", timeout=30, content=b"--x\r\nnonsense",
                     headers={**gw.headers, "Content-Type": "multipart/form-data; boundary=x"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    misnamed = httpx.post(f"{gw.url}/api/v1/messages", data={"text": "hi"}, timeout=30,
                          files=[("upload", ("a.txt", b"a", "text/plain"))],
                          headers=gw.headers)
    assert misnamed.status_code == 400 and "`file`" in misnamed.json()["error"]["message"]
    assert inbox(gw) == []
    assert upload(gw, "/files ok", ("fine.txt", b"ok", "text/plain")).status_code == 200


def test_a_skill_answers_with_a_file_that_the_sender_downloads(
        files_gateway: GatewayProcess) -> None:
    gw = files_gateway
    r = httpx.post(f"{gw.url}/api/v1/messages", json={"text": "/report May"},
                   headers={**gw.headers, "Idempotency-Key": "rep-1"}, timeout=30)
    assert r.status_code == 200, r.text
    (listed,) = r.json()["files"]
    assert listed["name"] == "report.txt" and listed["size"] == len("report for May")
    assert listed["url"] == f"/api/v1/attachments/{listed['id']}"
    got = httpx.get(f"{gw.url}{listed['url']}", headers=gw.headers)
    assert got.status_code == 200 and got.content == b"report for May"
    assert got.headers["content-disposition"].startswith("attachment")
    assert got.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(f"{gw.url}{listed['url']}").status_code == 401
    assert httpx.get(f"{gw.url}/api/v1/attachments/fnope", headers=gw.headers).status_code == 404
    again = httpx.post(f"{gw.url}/api/v1/messages", json={"text": "/report May"},
                       headers={**gw.headers, "Idempotency-Key": "rep-1"}, timeout=30)
    assert again.json() == r.json()  # a retry is answered from the store, files included

    leak = gw.post("/leak")
    assert leak.status_code == 500 and leak.json()["error"]["code"] == "skill_error"
    assert "outside the workspace" in leak.json()["error"]["message"]
    assert "/etc" not in leak.text

    im = httpx.post(f"{gw.url}/api/im", json={"id": "1", "sender": "ada", "text": "/report x"},
                    headers={"Authorization": "Bearer im-bot-token"}, timeout=30)
    assert im.status_code == 200, im.text
    assert "cannot carry" in im.json()["reply"] and "report.txt" in im.json()["reply"]
    no_files_yet = httpx.post(f"{gw.url}/api/im", timeout=30, headers={
        "Authorization": "Bearer im-bot-token"}, json={"id": "2", "sender": "ada", "text": "x",
                                                      "files": [{"name": "a", "data": ""}]})
    assert no_files_yet.status_code == 400 and "does not take files" in no_files_yet.text
    wrong_token = httpx.post(f"{gw.url}/api/im", json={"text": ""}, timeout=30,
                             headers={"Authorization": "Bearer nope"})
    assert wrong_token.status_code == 401  # the chain before the bad payload


def test_websocket_frames_carry_files_in_base64(files_gateway: GatewayProcess) -> None:
    gw = files_gateway
    ws = ws_connect(gw)
    try:
        ok = ws_final(ws, {"type": "message", "id": "1", "text": "/files",
                           "files": [{"name": "a.csv", "media_type": "text/csv",
                                      "data": b64(b"x,y\n1,2\n")}]})
        assert ok["type"] == "reply", ok
        (sent,) = json.loads(ok["text"])["files"]
        assert (sent["name"], sent["size"], sent["content"]) == ("a.csv", 8, "x,y\n1,2\n")

        bad = ws_final(ws, {"type": "message", "id": "2", "text": "hi",
                            "files": [{"name": "a.txt", "data": "%%% not base64"}]})
        assert bad["code"] == "bad_request" and "base64" in bad["message"]
        large = ws_final(ws, {"type": "message", "id": "3", "text": "hi",
                              "files": [{"name": "a.bin", "data": b64(b"x" * (FILE_CAP + 1))}]})
        assert large["code"] == "payload_too_large"
        assert f"{FILE_CAP} bytes (gateway.max_file_bytes)" in large["message"]
        wordy = ws_final(ws, {"type": "message", "id": "4", "text": "x" * (1024 * 1024 + 1)})
        assert wordy["code"] == "payload_too_large" and "max_body_bytes" in wordy["message"]

        report = ws_final(ws, {"type": "message", "id": "5", "text": "/report ws"})
        (listed,) = report["files"]
        got = httpx.get(f"{gw.url}{listed['url']}", headers=gw.headers)
        assert got.content == b"report for ws"
        assert ws_final(ws, {"type": "message", "id": "6", "text": "alive?"})["type"] == "reply"
    finally:
        ws.close()
    assert len(inbox(gw)) == 1  # only the file of the message that was answered


def test_the_model_reads_a_document_and_is_told_of_an_image_it_cannot_see(
        home: Path, fake_model: FakeModelServer) -> None:
    png = b"\x89PNG\r\n\x1a\n fake image"
    gw = start(home, fake_model)
    try:
        r = upload(gw, "what is in these?", ("plan.md", b"# Plan\nship on Friday\n",
                                             "text/markdown"), ("cat.png", png, "image/png"),
                   ("r.pdf", b"%PDF-1.4", "application/pdf"))
        assert r.status_code == 200, r.text
        turn = fake_model.requests[-1]["body"]["messages"][-1]
        assert turn["role"] == "user" and "images" not in turn
        assert turn["content"].startswith("what is in these?")
        assert "# Plan\nship on Friday" in turn["content"]
        assert "cannot see images" in turn["content"]
        assert "this document type is not read" in turn["content"]
        reply = r.json()["reply"]
        assert "cat.png is an image and the model 'llama2' cannot see images" in reply
        assert "r.pdf (application/pdf) is a document type that is not read" in reply
    finally:
        gw.stop()
    gw = start(home, fake_model, vision=True)
    try:
        r = upload(gw, "and now?", ("cat.png", png, "image/png"))
        assert r.status_code == 200, r.text
        turn = fake_model.requests[-1]["body"]["messages"][-1]
        assert turn["images"] == [b64(png)]  # Ollama's form: base64 beside the text
        assert "cannot see" not in r.json()["reply"]
    finally:
        gw.stop()


def test_doc_parser_answers_a_sent_document_with_its_json(
        files_gateway: GatewayProcess) -> None:
    guide = "# Install guide\n\nIntro.\n\n## Steps\nRun install.sh.\n\n## 常见问题\n重启即可。\n"
    r = upload(files_gateway, "/parse", ("guide.md", guide.encode(), "text/markdown"))
    assert r.status_code == 200, r.text
    doc = json.loads(r.json()["reply"])
    assert doc["source"] == "guide.md" and doc["title"] == "Install guide"
    assert [s["heading"] for s in doc["sections"]] == ["Install guide", "Steps", "常见问题"]
    assert doc["sections"][1]["text"] == "Run install.sh."
