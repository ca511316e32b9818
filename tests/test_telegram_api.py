"""Rendering the model's Markdown to Telegram's HTML and splitting it at 4,096 characters,
each piece checked by the fake's parser (`parse_html`, Telegram's rules): a piece it refuses
is one Telegram would refuse."""

from __future__ import annotations

import pytest

from gateway.channels.telegram_api import MAX_TEXT, render, split, unformatted
from tests.fakes.fake_telegram import EntityParseError, parse_html


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def visible(pieces: list[str]) -> list[str]:
    """What the user sees of each piece; every piece must parse as Telegram parses it."""
    return [parse_html(piece)[0] for piece in pieces]


def kinds(html: str) -> list[tuple[str, str]]:
    plain, entities = parse_html(html)
    return [(e["type"], plain[e["offset"]:e["offset"] + e["length"]]) for e in entities]


def test_markdown_becomes_html_telegram_accepts() -> None:
    text, mode = render("**bold** and *it* and _it2_ and ~~gone~~ and `a<b` and "
                        "[site](https://example.com/?a=1&b=2) & <tag>", "markdown")
    assert mode == "HTML"
    assert kinds(text) == [("bold", "bold"), ("italic", "it"), ("italic", "it2"),
                           ("strikethrough", "gone"), ("code", "a<b"),
                           ("text_link", "site")]
    assert parse_html(text)[0].endswith("& <tag>")  # escaped, shown as written


def test_code_is_escaped_and_not_formatted_inside() -> None:
    text, _ = render("see `**not bold**` and\n```python\nif a < b and c > d:\n    x = 1\n```"
                     "\ndone", "markdown")
    plain, _ = parse_html(text)
    assert kinds(text)[0] == ("code", "**not bold**")
    assert ("pre", "if a < b and c > d:\n    x = 1\n") in kinds(text)
    assert plain.endswith("\ndone")


def test_snake_case_and_lone_stars_stay_as_written() -> None:
    text, _ = render("call my_func_name with 2 * 3 * 4", "markdown")
    assert kinds(text) == [] and parse_html(text)[0] == "call my_func_name with 2 * 3 * 4"


@pytest.mark.parametrize(("form", "mode"), [("html", "HTML"), ("plain", None)])
def test_html_and_plain_pass_through(form: str, mode: str | None) -> None:
    assert render("<b>as is</b>", form) == ("<b>as is</b>", mode)


def test_a_short_reply_is_one_piece() -> None:
    assert split("<b>short</b>", "HTML") == ["<b>short</b>"]
    assert split("short", None) == ["short"]


def test_pieces_fit_and_reopen_the_open_tags() -> None:
    html = "<b>" + "x" * 5000 + "</b>"
    pieces = split(html, "HTML")
    assert len(pieces) == 2
    assert all(p.startswith("<b>") and p.endswith("</b>") for p in pieces)
    assert all(units(v) <= MAX_TEXT for v in visible(pieces))
    assert "".join(visible(pieces)) == "x" * 5000


def test_nested_tags_and_links_are_closed_and_reopened_in_order() -> None:
    html = '<b>bold <a href="https://example.com/a?b=1&amp;c=2">' + "link " * 30 + "</a></b>"
    pieces = split(html, "HTML", limit=40)
    shown = visible(pieces)
    assert "".join(shown) == parse_html(html)[0]
    assert all(units(v) <= 40 for v in shown)
    for piece in pieces[1:-1]:
        assert piece.startswith('<b><a href="https://example.com/a?b=1&amp;c=2">')
        assert piece.endswith("</a></b>")
        assert sorted(kind for kind, _ in kinds(piece)) == ["bold", "text_link"]


def test_a_cut_never_falls_inside_an_escape() -> None:
    html = "&amp;&lt;&gt;&#128512;" * 40  # 5 UTF-16 units each, the emoji two of them
    for limit in (7, 9, 10, 11, 64):
        pieces = split(html, "HTML", limit=limit)
        shown = visible(pieces)
        assert "".join(shown) == parse_html(html)[0], limit
        assert all(units(v) <= limit for v in shown), limit


def test_surrogate_pairs_count_twice_and_stay_whole() -> None:
    pieces = split("\U0001F600" * 3000, "HTML")
    shown = visible(pieces)
    assert [units(v) for v in shown] == [4096, 1904]
    assert "".join(shown) == "\U0001F600" * 3000


def test_a_cut_prefers_the_last_line_break() -> None:
    first, second = "a" * 3000, "<i>" + "b" * 3000 + "</i>"
    pieces = split(f"{first}\n{second}", "HTML")
    assert visible(pieces) == [first + "\n", "b" * 3000]
    assert pieces[1] == second


def test_a_line_break_too_early_is_not_taken() -> None:
    pieces = split("a" * 100 + "\n" + "b" * 5000, "HTML")
    assert [units(v) for v in visible(pieces)] == [4096, 1005]


def test_a_line_break_inside_pre_closes_and_reopens_it() -> None:
    text, mode = render("```\n" + "line of code\n" * 500 + "```", "markdown")
    pieces = split(text, mode)
    assert len(pieces) == 2
    assert all(p.startswith("<pre>") and p.endswith("</pre>") for p in pieces)
    assert all(visible([p])[0].endswith("\n") for p in pieces)
    assert "".join(visible(pieces)) == "line of code\n" * 500


def test_markdown_rendered_and_split_is_accepted_piece_by_piece() -> None:
    paragraph = ("**Step {n}**: run `make test` & read the _output_; see "
                 "[docs](https://example.com/{n}) for <details>.\n")
    text, mode = render("".join(paragraph.format(n=n) for n in range(200)), "markdown")
    pieces = split(text, mode)
    assert len(pieces) > 2
    shown = visible(pieces)
    assert all(units(v) <= MAX_TEXT for v in shown)
    assert all(v.endswith("\n") for v in shown)  # each cut at a line break
    assert "".join(shown) == parse_html(text)[0]


def test_the_fake_refuses_what_telegram_refuses() -> None:
    """The check above means something: a piece cut inside a tag or left open is refused."""
    for broken in ("<b>open", "<b>cut</", "&amp;<i", "<unknown>x</unknown>"):
        with pytest.raises(EntityParseError):
            parse_html(broken)


def test_plain_text_splits_at_the_limit_and_prefers_a_line_break() -> None:
    text = "a" * 3000 + "\n" + "b" * 3000 + "\U0001F600" * 1000
    pieces = split(text, None)
    assert "".join(pieces) == text
    assert pieces[0] == "a" * 3000 + "\n"
    assert all(units(p) <= MAX_TEXT for p in pieces)


def test_unformatted_is_what_the_user_would_have_seen() -> None:
    text, mode = render("**a** & `b<c` [d](https://e.example/?f=1&g=2)\n" * 900, "markdown")
    pieces = split(text, mode)
    assert len(pieces) > 1
    for i in range(len(pieces)):
        assert unformatted("".join(pieces[i:])) == "".join(visible(pieces[i:]))
    assert unformatted("a < b and c > d &amp; <div>e</div>") == "a < b and c > d & e"
