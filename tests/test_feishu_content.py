"""What a Feishu message says (`channels/feishu_content.py`) and what `channels.feishu:` takes
(`channels/feishu_options.py`): pure, no gateway."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.channels.feishu_content import Resource, mentions_bot, read
from gateway.channels.feishu_options import FeishuOptions

BOT = "ou_bot"
MENTIONS = [{"key": "@_user_1", "id": {"open_id": BOT}, "name": "Moltbot"},
            {"key": "@_user_2", "id": {"open_id": "ou_carol"}, "name": "Carol"}]


def message(kind: str, content: Any, **extra: Any) -> dict[str, Any]:
    return {"message_id": "om_1", "message_type": kind, "content": json.dumps(content),
            **extra}


def test_text_drops_the_bots_mention_and_names_the_others() -> None:
    found = read(message("text", {"text": "@_user_1 ask @_user_2 please"},
                         mentions=MENTIONS), BOT)
    assert found.text == "ask @Carol please" and found.resources == []
    assert mentions_bot({"mentions": MENTIONS}, BOT)
    assert not mentions_bot({"mentions": MENTIONS[1:]}, BOT)


def test_rich_text_with_a_locale_links_mentions_and_an_image() -> None:
    post = {"zh_cn": {"title": "周报", "content": [
        [{"tag": "at", "user_id": "@_user_1"}, {"tag": "text", "text": " see "},
         {"tag": "a", "text": "doc", "href": "https://f.cn/d"}],
        [{"tag": "img", "image_key": "img_9"}],
        [{"tag": "code_block", "text": "x = 1"}]]}}
    found = read(message("post", post, mentions=MENTIONS), BOT)
    assert found.text == "周报\nsee doc (https://f.cn/d)\nx = 1"
    assert found.resources == [Resource("img_9", "image", "image-om_1-1.png")]


def test_images_and_files_are_named_for_download_and_other_kinds_said() -> None:
    assert read(message("image", {"image_key": "img_1"}), BOT).resources == [
        Resource("img_1", "image", "image-om_1.png")]
    assert read(message("file", {"file_key": "f_1", "file_name": "a.pdf"}),
                BOT).resources == [Resource("f_1", "file", "a.pdf")]
    assert "cannot read" in read(message("sticker", {"file_key": "s"}), BOT).text
    assert read({"message_type": "text", "content": "not json"}, BOT).text == ""


@pytest.mark.parametrize(("domain", "origin"), [
    ("feishu", "https://open.feishu.cn"), ("lark", "https://open.larksuite.com"),
    ("https://proxy.example.com/", "https://proxy.example.com"),
    ("http://127.0.0.1:9000", "http://127.0.0.1:9000")])
def test_the_domain_is_feishu_lark_or_an_origin(domain: str, origin: str) -> None:
    options = FeishuOptions(app_id="cli_1", app_secret="s", domain=domain)
    assert options.enabled and options.origin == origin


@pytest.mark.parametrize(("given", "says"), [
    ({"app_id": "cli_1"}, "app_secret are required"),
    ({"app_id": "cli_1", "app_secret": "s", "domain": "http://open.feishu.cn"}, "https"),
    ({"app_id": "cli_1", "app_secret": "s", "domain": "https://x.cn/open-apis"}, "no path"),
    ({"app_id": "cli_1", "app_secret": "s", "mode": "callback"}, "encrypt_key"),
    ({"app_id": "cli_1", "app_secret": "s", "mode": "socket"}, "long_connection"),
])
def test_bad_options_say_what_to_fix(given: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        FeishuOptions.model_validate(given)


def test_no_section_leaves_it_off_and_secrets_stay_out_of_repr() -> None:
    assert not FeishuOptions.model_validate({}).enabled
    options = FeishuOptions(app_id="cli_1", app_secret="very-secret", encrypt_key="k-secret")
    assert "very-secret" not in repr(options) and "k-secret" not in repr(options)
