"""The fake Telegram Bot API, driven over HTTP with plain httpx as a bot would drive it.

Why: the Telegram channel's tests trust this fake to answer as api.telegram.org does (the
envelope, long polling, the 409s, the webhook, the error texts, files); these tests pin that
down, so a fake that drifts from the Bot API fails here first. No test measures time: a long
poll that was not woken would outlast the client's 5 s timeout and fail the test.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.fakes.fake_robots import WebhookReceiver
from tests.fakes.fake_telegram import (
    ENDED_BY_WEBHOOK,
    NOT_MODIFIED,
    POLL_CONFLICT,
    WEBHOOK_ACTIVE,
    FakeTelegram,
    Pollers,
    parse_html,
    parse_markdown_v2,
)

CHAT = 4242


def png(width: int, height: int) -> bytes:
    """A real (grey, uncompressed-content) PNG image of that size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                            0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# One client for every request: a new httpx client per call costs more than the call itself.
HTTP = httpx.Client(timeout=5)


@pytest.fixture(scope="module", autouse=True)
def close_http() -> Iterator[None]:
    yield
    HTTP.close()


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram(webhook_retry_delays=(0.01, 0.01)) as fake:
        yield fake


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def call(tg: FakeTelegram, method: str, **params: Any) -> httpx.Response:
    return HTTP.post(f"{tg.bot_url}/{method}", json=params)


def ok(response: httpx.Response) -> Any:
    body = response.json()
    assert response.status_code == 200 and body["ok"] is True, body
    return body["result"]


def refused(response: httpx.Response, status: int, description: str) -> None:
    assert response.status_code == status
    assert response.json() == {"ok": False, "error_code": status, "description": description}


def poll_in_background(pool: ThreadPoolExecutor, tg: FakeTelegram, **params: Any
                       ) -> Future[httpx.Response]:
    """A long poll that is surely waiting at the fake when this returns."""
    waiting = tg.pollers.in_flight
    future = pool.submit(call, tg, "getUpdates", **params)
    tg.wait_for_pollers(waiting + 1)
    return future


# --------------------------------------------------------------------------- envelope


def test_get_me_answers_in_the_envelope_and_names_a_bad_token_or_method(tg: FakeTelegram) -> None:
    me = ok(HTTP.get(f"{tg.bot_url}/getMe"))
    assert me["id"] == 123456789 and me["is_bot"] is True
    assert me["username"] == "moltbot_test_bot" and me["first_name"] == "Moltbot"
    assert ok(HTTP.get(f"{tg.bot_url}/getme")) == me  # method names in any case

    refused(HTTP.get(f"{tg.api_base}/bot123456789:wrong/getMe"), 401, "Unauthorized")
    refused(call(tg, "sendSticker", chat_id=CHAT), 404, "Not Found")
    refused(HTTP.post(f"{tg.bot_url}/getMe", content=b"[1]",
                      headers={"Content-Type": "application/json"}),
            400, "Bad Request: can't parse JSON object")


# --------------------------------------------------------------------------- getUpdates


def test_a_long_poll_answers_queued_updates_at_once_and_wakes_on_a_new_one(
        tg: FakeTelegram, pool: ThreadPoolExecutor) -> None:
    first = tg.user_says(CHAT, "queued before")
    updates = ok(call(tg, "getUpdates", timeout=30))
    assert [u["message"] for u in updates] == [first]

    waiting = poll_in_background(pool, tg, timeout=30, offset=updates[0]["update_id"] + 1)
    said = tg.user_says(CHAT, "hello")
    woken = ok(waiting.result())
    assert woken == [{"update_id": updates[0]["update_id"] + 1, "message": said}]
    assert said["text"] == "hello" and said["chat"] == {
        "id": CHAT, "first_name": "Alice", "username": "alice", "type": "private"}
    assert tg.pollers == Pollers(in_flight=0, started=2)


def test_offset_confirms_updates_for_good_and_limit_caps_the_answer(tg: FakeTelegram) -> None:
    for text in ("one", "two", "three"):
        tg.user_says(CHAT, text)
    updates = ok(call(tg, "getUpdates"))
    ids = [u["update_id"] for u in updates]
    assert [u["message"]["text"] for u in updates] == ["one", "two", "three"]
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2]

    assert ok(call(tg, "getUpdates", limit=1)) == updates[:1]  # nothing confirmed yet
    assert ok(call(tg, "getUpdates", offset=ids[1])) == updates[1:]
    assert ok(call(tg, "getUpdates", offset=ids[0])) == updates[1:]  # "one" is gone for good
    assert ok(call(tg, "getUpdates", offset=-1)) == updates[2:]  # forgets all before the last
    assert ok(call(tg, "getUpdates")) == updates[2:]
    assert ok(call(tg, "getUpdates", offset=ids[2] + 1)) == []
    assert ok(call(tg, "getUpdates")) == []


def test_allowed_updates_is_kept_and_filters_later_updates(tg: FakeTelegram) -> None:
    # a GET with a query string, as some clients poll
    params = {"allowed_updates": json.dumps(["callback_query"])}
    assert ok(HTTP.get(f"{tg.bot_url}/getUpdates", params=params)) == []
    tg.user_says(CHAT, "not wanted")
    pressed = tg.push_update(callback_query={"id": "7", "data": "yes"})
    assert ok(call(tg, "getUpdates")) == [pressed]  # the setting stays without the parameter

    ok(call(tg, "getUpdates", allowed_updates=[], offset=pressed["update_id"] + 1))
    said = tg.user_says(CHAT, "wanted again")
    assert [u["message"] for u in ok(call(tg, "getUpdates"))] == [said]


def test_a_newer_poll_ends_the_waiting_one_with_409(tg: FakeTelegram,
                                                   pool: ThreadPoolExecutor) -> None:
    older = poll_in_background(pool, tg, timeout=30)
    assert ok(call(tg, "getUpdates", timeout=0)) == []
    refused(older.result(), 409, POLL_CONFLICT)
    assert POLL_CONFLICT == ("Conflict: terminated by other getUpdates request; make sure that "
                             "only one bot instance is running")
    assert tg.pollers == Pollers(in_flight=0, started=2)


def test_a_webhook_ends_the_waiting_poll_and_refuses_getupdates(
        tg: FakeTelegram, pool: ThreadPoolExecutor) -> None:
    waiting = poll_in_background(pool, tg, timeout=30)
    tg.set_webhook_externally("http://127.0.0.1:9/elsewhere")
    refused(waiting.result(), 409, ENDED_BY_WEBHOOK)
    refused(call(tg, "getUpdates"), 409, WEBHOOK_ACTIVE)
    assert WEBHOOK_ACTIVE == ("Conflict: can't use getUpdates method while webhook is active; "
                              "use deleteWebhook to delete the webhook first")
    info = ok(call(tg, "getWebhookInfo"))
    assert info["url"] == "http://127.0.0.1:9/elsewhere" and info["pending_update_count"] == 0

    assert call(tg, "deleteWebhook").json() == {"ok": True, "result": True,
                                                "description": "Webhook was deleted"}
    assert call(tg, "deleteWebhook").json()["description"] == "Webhook is already deleted"
    assert ok(call(tg, "getWebhookInfo"))["url"] == ""
    assert ok(call(tg, "getUpdates")) == []


def test_hung_poll_answers_nothing_and_leaves_the_updates_to_the_next(tg: FakeTelegram) -> None:
    tg.hang_getupdates()
    said = tg.user_says(CHAT, "still here")
    with pytest.raises(httpx.ReadTimeout):
        HTTP.post(f"{tg.bot_url}/getUpdates", json={"timeout": 0}, timeout=0.3)
    tg.wait_for_pollers(0)  # the fake noticed that its client hung up
    assert [u["message"] for u in ok(call(tg, "getUpdates"))] == [said]
    assert tg.pollers.started == 2


def test_stop_ends_a_waiting_poll_unanswered_and_start_listens_on_the_same_port(
        pool: ThreadPoolExecutor) -> None:
    tg = FakeTelegram().start()
    try:
        waiting = poll_in_background(pool, tg, timeout=30)
        port = tg.port
        tg.stop()
        with pytest.raises(httpx.RemoteProtocolError):
            waiting.result()
        with pytest.raises(httpx.ConnectError):
            call(tg, "getMe")
        tg.start()
        assert tg.port == port and ok(call(tg, "getMe"))["is_bot"] is True
    finally:
        tg.stop()


# --------------------------------------------------------------------------- webhooks


def test_webhook_posts_updates_with_the_secret_and_retries_until_accepted(
        tg: FakeTelegram) -> None:
    with WebhookReceiver() as hook:
        hook.fail_times = 2
        answer = call(tg, "setWebhook", url=f"{hook.url}/tg", secret_token="s3cr3t_-x")
        assert answer.json() == {"ok": True, "result": True, "description": "Webhook was set"}
        said = tg.user_says(CHAT, "via webhook")
        delivered = hook.wait_accepted(1)[0]
        assert delivered.path == "/tg"
        assert delivered.headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cr3t_-x"
        assert delivered.body == {"update_id": delivered.body["update_id"], "message": said}
        tries = tg.wait_for_webhook(3)
        assert [(t.attempt, t.status) for t in tries] == [(1, 500), (2, 500), (3, 200)]
        tg.wait_for(lambda: not tg.pending_updates)
        info = ok(call(tg, "getWebhookInfo"))
        assert info["pending_update_count"] == 0
        assert info["last_error_message"] == ("Wrong response from the webhook: 500 Internal "
                                              "Server Error")

        hook.fail_times = 10  # more than the fake tries: it gives the update up
        dropped = tg.user_says(CHAT, "lost")
        assert tg.wait_for(lambda: tg.webhook_given_up)
        assert tg.webhook_given_up[0]["message"] == dropped
        assert [t.attempt for t in tg.webhook_deliveries[3:]] == [1, 2, 3]
        assert ok(call(tg, "getWebhookInfo"))["pending_update_count"] == 0

        refused(call(tg, "setWebhook", url=f"{hook.url}/tg", secret_token="not allowed!"), 400,
                "Bad Request: secret token contains unallowed characters")
        assert call(tg, "setWebhook", url=f"{hook.url}/tg").json()["description"] == \
            "Webhook is already set"


def test_a_webhook_answer_naming_a_method_is_executed(tg: FakeTelegram) -> None:
    class Answering(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            update = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = json.dumps({"method": "sendMessage", "text": "answered in the reply",
                                "chat_id": update["message"]["chat"]["id"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    with ThreadPoolExecutor(max_workers=1) as runner:
        runner.submit(server.serve_forever, 0.05)
        try:
            tg.set_webhook_externally(f"http://127.0.0.1:{server.server_address[1]}/")
            tg.user_says(CHAT, "hi")
            sent = tg.wait_for_sent(1)
            assert (sent[0].chat_id, sent[0].text) == (CHAT, "answered in the reply")
        finally:
            server.shutdown()
            server.server_close()


# --------------------------------------------------------------------------- sending


def test_send_message_returns_the_message_and_records_what_was_sent(tg: FakeTelegram) -> None:
    tg.add_chat(CHAT)
    keyboard = {"inline_keyboard": [[{"text": "Yes", "callback_data": "y"}]]}
    message = ok(call(tg, "sendMessage", chat_id=CHAT, text="<b>Hi</b> /help",
                      parse_mode="HTML", reply_markup=keyboard))
    assert message["text"] == "Hi /help" and message["from"]["is_bot"] is True
    assert message["chat"]["id"] == CHAT and message["reply_markup"] == keyboard
    assert message["entities"] == [{"type": "bold", "offset": 0, "length": 2},
                                   {"type": "bot_command", "offset": 3, "length": 5}]
    # form-urlencoded, and a GET with a query string, as other clients send
    ok(HTTP.post(f"{tg.bot_url}/sendMessage", data={"chat_id": str(CHAT), "text": "form"}))
    ok(HTTP.get(f"{tg.bot_url}/sendMessage", params={"chat_id": CHAT, "text": "query"}))
    sent = tg.wait_for_sent(3)
    assert [(s.method, s.chat_id, s.text, s.parse_mode) for s in sent] == [
        ("sendMessage", CHAT, "<b>Hi</b> /help", "HTML"), ("sendMessage", CHAT, "form", None),
        ("sendMessage", CHAT, "query", None)]
    assert sent[0].reply_markup == keyboard and sent[0].message == message


def test_text_over_4096_visible_characters_is_too_long(tg: FakeTelegram) -> None:
    tg.add_chat(CHAT)
    refused(call(tg, "sendMessage", chat_id=CHAT, text="x" * 4097), 400,
            "Bad Request: message is too long")
    ok(call(tg, "sendMessage", chat_id=CHAT, text="x" * 4096))
    # markup does not count, only what the user sees; characters, not bytes
    ok(call(tg, "sendMessage", chat_id=CHAT, text="<b>" + "x" * 4096 + "</b>",
            parse_mode="HTML"))
    ok(call(tg, "sendMessage", chat_id=CHAT, text="é" * 4096))
    refused(call(tg, "sendMessage", chat_id=CHAT, text="<i>" + "x" * 4097 + "</i>",
                 parse_mode="HTML"), 400, "Bad Request: message is too long")
    refused(call(tg, "sendMessage", chat_id=CHAT, text=" \n"), 400,
            "Bad Request: message text is empty")
    refused(call(tg, "sendMessage", chat_id=CHAT, text="<b></b>", parse_mode="HTML"), 400,
            "Bad Request: message text is empty")


@pytest.mark.parametrize(("text", "parse_mode", "error"), [
    ("<b>bold", "HTML", 'Can\'t find end tag corresponding to start tag "b"'),
    ("<p>para</p>", "HTML", 'Unsupported start tag "p" at byte offset 0'),
    ("1 < 2", "HTML", 'Unsupported start tag "" at byte offset 2'),
    ("<b>x</i>", "HTML", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
    ("x</b>", "HTML", "Unexpected end tag at byte offset 1"),
    ("Version 1.0", "MarkdownV2",
     "Character '.' is reserved and must be escaped with the preceding '\\'"),
    ("*bold", "MarkdownV2", "Can't find end of Bold entity at byte offset 0"),
    ("a *b", "Markdown", "Can't find end of the entity starting at byte offset 2"),
])
def test_bad_markup_is_refused_with_telegrams_words(tg: FakeTelegram, text: str,
                                                    parse_mode: str, error: str) -> None:
    tg.add_chat(CHAT)
    refused(call(tg, "sendMessage", chat_id=CHAT, text=text, parse_mode=parse_mode), 400,
            f"Bad Request: can't parse entities: {error}")


def test_good_markup_becomes_entities_with_utf16_offsets(tg: FakeTelegram) -> None:
    tg.add_chat(CHAT)
    refused(call(tg, "sendMessage", chat_id=CHAT, text="x", parse_mode="rtf"), 400,
            "Bad Request: unsupported parse_mode")
    message = ok(call(tg, "sendMessage", chat_id=CHAT, parse_mode="MarkdownV2",
                      text="🏟 *bold* _it_ [link](https://example\\.org) `x\\.y` 1\\.0"))
    assert message["text"] == "🏟 bold it link x.y 1.0"  # escapes work inside code too
    assert message["entities"] == [
        {"type": "bold", "offset": 3, "length": 4}, {"type": "italic", "offset": 8, "length": 2},
        {"type": "text_link", "offset": 11, "length": 4, "url": "https://example.org/"},
        {"type": "code", "offset": 16, "length": 3}]
    assert parse_html('<a href="https://t.me">t</a> &lt;<pre><code class="language-py">1'
                      "</code></pre>") == (
        "t <1", [{"type": "text_link", "offset": 0, "length": 1, "url": "https://t.me/"},
                 {"type": "pre", "offset": 3, "length": 1, "language": "py"}])
    assert parse_markdown_v2(">quoted\n>more||\nafter") == (
        "quoted\nmore\nafter", [{"type": "expandable_blockquote", "offset": 0, "length": 12}])


def test_unknown_and_blocked_chats_are_refused(tg: FakeTelegram) -> None:
    refused(call(tg, "sendMessage", chat_id=999, text="hi"), 400, "Bad Request: chat not found")
    refused(call(tg, "sendMessage", text="hi"), 400, "Bad Request: chat_id is empty")
    tg.add_chat(CHAT)
    tg.add_chat(-1001, "supergroup", title="Team", username="team_chat")
    assert ok(call(tg, "sendMessage", chat_id="@team_chat", text="hi"))["chat"] == {
        "id": -1001, "title": "Team", "username": "team_chat", "type": "supergroup"}
    tg.block_chat(CHAT)
    tg.block_chat(-1001)
    refused(call(tg, "sendMessage", chat_id=CHAT, text="hi"), 403,
            "Forbidden: bot was blocked by the user")
    refused(call(tg, "sendChatAction", chat_id=CHAT, action="typing"), 403,
            "Forbidden: bot was blocked by the user")
    refused(call(tg, "sendMessage", chat_id=-1001, text="hi"), 403,
            "Forbidden: bot was kicked from the supergroup chat")
    tg.unblock_chat(CHAT)
    ok(call(tg, "sendMessage", chat_id=CHAT, text="hi"))
    assert [s.chat_id for s in tg.sent] == [-1001, CHAT]


def test_rate_limiting_answers_429_with_retry_after(tg: FakeTelegram) -> None:
    tg.add_chat(CHAT)
    tg.rate_limit(7, times=1)
    limited = call(tg, "sendMessage", chat_id=CHAT, text="hi")
    assert limited.status_code == 429
    assert limited.json() == {"ok": False, "error_code": 429,
                              "description": "Too Many Requests: retry after 7",
                              "parameters": {"retry_after": 7}}
    ok(call(tg, "sendMessage", chat_id=CHAT, text="hi"))

    tg.rate_limit(3)
    assert call(tg, "sendChatAction", chat_id=CHAT, action="typing").status_code == 429
    assert ok(call(tg, "getUpdates")) == []  # polling goes on
    tg.rate_limit(None)
    tg.fail_next("sendMessage", 502)
    tg.fail_next("*", 429, retry_after=2)
    refused(call(tg, "sendMessage", chat_id=CHAT, text="hi"), 502, "Bad Gateway")
    assert call(tg, "getMe").json()["parameters"] == {"retry_after": 2}
    assert [s.text for s in tg.wait_for_sent(1)] == ["hi"]  # refused sends are not sent


def test_replies_chat_actions_edits_and_deletes(tg: FakeTelegram) -> None:
    asked = tg.user_says(CHAT, "question?")
    answer = ok(call(tg, "sendMessage", chat_id=CHAT, text="answer",
                     reply_parameters={"message_id": asked["message_id"]}))
    assert answer["reply_to_message"] == asked
    assert tg.sent[-1].reply_parameters == {"message_id": asked["message_id"]}
    legacy = HTTP.post(f"{tg.bot_url}/sendMessage", data={
        "chat_id": CHAT, "text": "again", "reply_to_message_id": asked["message_id"]})
    assert ok(legacy)["reply_to_message"]["message_id"] == asked["message_id"]
    refused(call(tg, "sendMessage", chat_id=CHAT, text="x", reply_parameters={"message_id": 99}),
            400, "Bad Request: message to be replied not found")
    alone = ok(call(tg, "sendMessage", chat_id=CHAT, text="x", reply_parameters={
        "message_id": 99, "allow_sending_without_reply": True}))
    assert "reply_to_message" not in alone
    followup = tg.user_says(CHAT, "thanks", reply_to=answer["message_id"])
    assert followup["reply_to_message"]["text"] == "answer"

    assert ok(call(tg, "sendChatAction", chat_id=CHAT, action="typing")) is True
    refused(call(tg, "sendChatAction", chat_id=CHAT, action="dancing"), 400,
            "Bad Request: wrong parameter action in request")
    assert tg.actions == [(CHAT, "typing")]

    edited = ok(call(tg, "editMessageText", chat_id=CHAT, message_id=answer["message_id"],
                     text="better answer"))
    assert edited["text"] == "better answer" and "edit_date" in edited
    refused(call(tg, "editMessageText", chat_id=CHAT, message_id=answer["message_id"],
                 text="better answer"), 400, f"Bad Request: {NOT_MODIFIED}")
    assert tg.sent[-1].method == "editMessageText" and tg.sent[0].message["text"] == "answer"
    assert ok(call(tg, "deleteMessage", chat_id=CHAT, message_id=answer["message_id"])) is True
    refused(call(tg, "deleteMessage", chat_id=CHAT, message_id=answer["message_id"]), 400,
            "Bad Request: message to delete not found")


def test_users_messages_carry_commands_mentions_and_group_chats(tg: FakeTelegram) -> None:
    said = tg.user_says(-100777, "🏟 /start@moltbot_test_bot hi @bob", chat_type="supergroup",
                        title="Team", user={"id": 55, "first_name": "Bob", "username": "bob"})
    assert said["chat"] == {"id": -100777, "title": "Team", "type": "supergroup"}
    assert said["from"] == {"id": 55, "is_bot": False, "first_name": "Bob", "username": "bob"}
    assert said["entities"] == [{"type": "bot_command", "offset": 3, "length": 23},
                                {"type": "mention", "offset": 30, "length": 4}]
    assert "entities" not in tg.user_says(CHAT, "plain words, a/b and mail@example.org")
    assert ok(call(tg, "setMyCommands", commands=[{"command": "help", "description": "Help"}]))
    assert ok(call(tg, "getMyCommands")) == [{"command": "help", "description": "Help"}]


# --------------------------------------------------------------------------- files


def download(tg: FakeTelegram, file_id: str) -> bytes:
    found = ok(call(tg, "getFile", file_id=file_id))
    response = HTTP.get(f"{tg.api_base}/file/bot{tg.token}/{found['file_path']}")
    assert response.status_code == 200
    assert found["file_size"] == len(response.content)
    return response.content


def test_files_go_up_by_multipart_and_come_back_through_get_file(tg: FakeTelegram) -> None:
    tg.add_chat(CHAT)
    report = bytes(range(256)) * 40 + b"\r\n--not-a-boundary\r\n"
    uploaded = HTTP.post(f"{tg.bot_url}/sendDocument",
                         data={"chat_id": str(CHAT), "caption": "the *report*",
                               "parse_mode": "Markdown"},
                         files={"document": ("report.pdf", report, "application/pdf")})
    message = ok(uploaded)
    document = message["document"]
    assert (document["file_name"], document["mime_type"], document["file_size"]) == (
        "report.pdf", "application/pdf", len(report))
    assert message["caption"] == "the report"
    assert message["caption_entities"] == [{"type": "bold", "offset": 4, "length": 6}]
    assert tg.sent[-1].files["document"].data == report
    assert download(tg, document["file_id"]) == report

    photo = png(100, 50)
    sizes = tg.user_sends_photo(CHAT, photo, caption="look")["photo"]
    assert [(s["width"], s["height"]) for s in sizes] == [(90, 45), (100, 50)]
    assert download(tg, sizes[-1]["file_id"]) == photo
    again = ok(call(tg, "sendPhoto", chat_id=CHAT, photo=sizes[-1]["file_id"]))  # by file_id
    assert again["photo"][-1]["file_id"] == sizes[-1]["file_id"]

    tg.add_url("https://example.org/hello.ogg", b"OggS-voice", "audio/ogg")
    voice = ok(call(tg, "sendVoice", chat_id=CHAT, voice="https://example.org/hello.ogg",
                    duration=2))["voice"]
    assert (voice["mime_type"], voice["duration"]) == ("audio/ogg", 2)
    assert download(tg, voice["file_id"]) == b"OggS-voice"
    heard = tg.user_sends_voice(CHAT, b"OggS-user", duration=3)["voice"]
    assert download(tg, heard["file_id"]) == b"OggS-user"
    sent_doc = tg.user_sends_document(CHAT, b"%PDF-1.4", file_name="a.pdf")["document"]
    assert sent_doc["mime_type"] == "application/pdf"


def test_missing_or_unknown_files_are_refused(tg: FakeTelegram) -> None:
    tg.add_chat(CHAT)
    refused(call(tg, "sendDocument", chat_id=CHAT), 400,
            "Bad Request: there is no document in the request")
    refused(call(tg, "sendPhoto", chat_id=CHAT, photo="no-such-file"), 400,
            "Bad Request: wrong file identifier/HTTP URL specified")
    refused(call(tg, "sendVoice", chat_id=CHAT, voice="https://example.org/unknown.ogg"), 400,
            "Bad Request: failed to get HTTP URL content")
    refused(HTTP.post(f"{tg.bot_url}/sendPhoto", data={"chat_id": str(CHAT)},
                      files={"photo": ("x.jpg", b"not an image", "image/jpeg")}),
            400, "Bad Request: IMAGE_PROCESS_FAILED")
    refused(call(tg, "getFile", file_id="no-such-file"), 400, "Bad Request: invalid file_id")
    missing = HTTP.get(f"{tg.api_base}/file/bot{tg.token}/documents/nothing.pdf")
    assert missing.status_code == 404
    assert tg.sent == []
