"""Memory's parts on their own: the Markdown facts file round trip (Chinese too), the FTS5
index and its ranking, whose memory a message reads (verified senders, linked identities,
never an unverified stranger), and the config's checks."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.assistant.memory import Memory, MemoryFull, Owners, owner_name
from gateway.assistant.memory_file import Fact, FactsFile
from gateway.assistant.memory_index import MemoryIndex
from gateway.assistant.summaries import turn_digest, uncovered
from gateway.common.options import ConfigError
from gateway.common.workspace import Workspace
from gateway.config import parse_config
from gateway.core.message import Message
from gateway.core.settings import Process
from gateway.core.store import Store
from gateway.guards.stranger import SenderRow
from gateway.server.app import build_gateway, settings_for
from tests.conftest import model_config
from tests.fakes.fake_model import FakeModelServer

HAND_WRITTEN = """# Memory of Ada

Things I told the assistant.
* [2026-11-02] My name is Ada
-   I prefer short answers\t\t
  - [2026-12-01] 我的航班是12号
not a fact: - this line has text before the dash
"""


def test_a_hand_written_file_round_trips_exactly_and_reads_its_facts() -> None:
    file = FactsFile.parse(HAND_WRITTEN)
    assert file.render() == HAND_WRITTEN
    assert file.facts == [Fact("My name is Ada", "2026-11-02"), Fact("I prefer short answers"),
                          Fact("我的航班是12号", "2026-12-01")]


def test_changes_touch_only_their_own_lines(tmp_path: Path) -> None:
    file = FactsFile.parse(HAND_WRITTEN)
    file.replace(1, Fact("I prefer long answers"))
    file.remove([True, True, False])
    file.add(Fact("我喜欢喝茶", "2026-12-06"))
    path = tmp_path / "memory" / "ada.md"
    file.write(path)
    text = path.read_text(encoding="utf-8")
    assert text == HAND_WRITTEN.replace("-   I prefer short answers\t\t",
                                        "- I prefer long answers").replace(
        "  - [2026-12-01] 我的航班是12号\n", "") + "- [2026-12-06] 我喜欢喝茶\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["ada.md"]  # no temporary file left


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[Memory]:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield Memory(tmp_path / "memory", MemoryIndex(store), clock=lambda: 1_796_500_000)
    store.close()


def test_recall_ranks_english_and_chinese_facts_and_fills_with_the_newest(
        memory: Memory) -> None:
    for fact in ("My name is Ada", "My flight to Oslo is on the 12th", "I prefer short answers",
                 "我的猫叫小白", "我对花生过敏", "My dentist appointment is on Friday"):
        memory.remember("ada", fact, 100)
    assert memory.recall("ada", "when is my flight?", 1)[0].fact.text == \
        "My flight to Oslo is on the 12th"
    assert memory.recall("ada", "我的猫叫什么?", 1)[0].fact.text == "我的猫叫小白"
    assert memory.recall("ada", "我能吃花生吗", 1)[0].fact.text == "我对花生过敏"
    found = [f.fact.text for f in memory.recall("ada", "what is my name", 3)]
    assert found[0] == "My name is Ada"
    assert found[1:] == ["My dentist appointment is on Friday", "我对花生过敏"]  # the newest
    assert memory.recall("bob", "what is my name", 3) == []  # another owner's facts never


def test_the_same_fact_twice_is_kept_once_and_the_limit_says_what_to_do(
        memory: Memory) -> None:
    memory.remember("ada", "I like tea", 2)
    memory.remember("ada", "i like TEA", 2)
    assert [f.text for f in memory.facts("ada")] == ["i like TEA"]
    memory.remember("ada", "I like coffee", 2)
    with pytest.raises(MemoryFull, match=r"memory\.max_facts"):
        memory.remember("ada", "I like juice", 2)
    with pytest.raises(ValueError, match="empty"):
        memory.remember("ada", "  \n ", 2)


def test_forget_by_words_by_number_and_all_leaves_nothing_in_file_or_index(
        memory: Memory) -> None:
    for fact in ("I like tea", "I like coffee", "My name is Ada"):
        memory.remember("ada", fact, 10)
    assert [f.text for f in memory.forget("ada", "LIKE")] == ["I like tea", "I like coffee"]
    assert [f.text for f in memory.forget("ada", "1")] == ["My name is Ada"]
    memory.remember("ada", "My name is Ada", 10)
    assert memory.forget_all("ada") == 1
    assert not memory.path("ada").exists()
    assert memory.recall("ada", "name", 5) == [] and memory.index.owners() == []


def test_a_hand_edit_reaches_the_index_with_sync(memory: Memory) -> None:
    memory.remember("ada", "I like tea", 10)
    memory.path("ada").write_text("- 我住在上海\n", encoding="utf-8")
    (memory.folder / "bob.md").write_text("- Bob likes chess\n", encoding="utf-8")
    assert memory.sync() == ["ada", "bob"]
    assert memory.sync() == []  # nothing changed since
    assert memory.recall("ada", "你住在哪里? 上海", 1)[0].fact.text == "我住在上海"
    memory.path("bob").unlink()
    assert memory.sync() == ["bob"] and memory.index.owners() == ["ada"]


def test_the_consoles_edit_refuses_a_fact_that_changed_meanwhile(memory: Memory) -> None:
    memory.remember("ada", "I like tea", 10)
    assert memory.change("ada", 0, "I like tea", "I like green tea").text == "I like green tea"
    with pytest.raises(ValueError, match="reload"):
        memory.change("ada", 0, "I like tea", None)
    memory.change("ada", 0, "I like green tea", None)
    assert memory.facts("ada") == []


def settings(tmp_path: Path, **memory: object) -> tuple[Process, object]:
    workspace = Workspace(tmp_path / "ws")
    process = Process(workspace, Store(workspace.db_url))
    config = parse_config({"security": {"stranger_mode": "open",
                                        "allowlist": ["telegram:77"]}, "memory": memory})
    return process, settings_for(config, process)


def test_who_owns_a_messages_memory(tmp_path: Path) -> None:
    process, snapshot = settings(tmp_path, owners={"ada": ["token:config", "telegram:1"]})
    owners = Owners(process.store, frozenset({"telegram"}))

    def owner(channel: str, sender: str, principal: str = "platform:telegram") -> str | None:
        return owners.owner_of(Message(channel, sender, sender, "hi", principal=principal),
                               snapshot)  # type: ignore[arg-type]

    assert owner("http", "anyone", "token:config") == "ada"  # linked: one memory
    assert owner("telegram", "1") == "ada"
    assert owner("http", "x", "jwt:bob") == "jwt-bob"
    assert owner("websocket", "x", "token:console") == "owner"  # every other token: the owner's
    assert owner("telegram", "77") == "telegram-77"  # in security.allowlist
    assert owner("telegram", "9") is None  # stranger_mode open: talks, has no memory
    process.store.put_sender(SenderRow("telegram", "9", "pending", "h", 0.0))
    assert owner("telegram", "9") is None  # a code was sent, not answered
    process.store.put_sender(SenderRow("telegram", "9", "approved"))
    assert owner("telegram", "9") == "telegram-9"
    process.store.close()


def test_owner_names_are_safe_file_names() -> None:
    assert owner_name("jwt:ada") == "jwt-ada"
    assert owner_name("jwt:ada@example.com").startswith("jwt-ada_example.com-")
    assert owner_name("jwt:../../etc") != owner_name("jwt:.._.._etc")
    assert "/" not in owner_name("jwt:../../etc")


@pytest.mark.parametrize("memory,problem", [
    ({"owners": {"../x": ["token:config"]}}, "file name"),
    ({"owners": {"ada": ["12345"]}}, "not an identity"),
    ({"owners": {"ada": ["telegram:1"], "bob": ["telegram:1"]}}, "both"),
    ({"owners": {"ada": ["telegram:1"]}, "enabled": False}, "memory.enabled is false"),
    ({"recall": 100}, "recall"),
])
def test_config_refuses_what_would_not_work(memory: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_config({"memory": memory})


def test_a_summary_covers_turns_up_to_its_last_one() -> None:
    turns = [("a", "1"), ("b", "2"), ("c", "3")]
    assert uncovered(turns, None) == turns
    assert uncovered(turns, turn_digest(("b", "2"))) == [("c", "3")]
    assert uncovered(turns, turn_digest(("c", "3"))) == []
    assert uncovered(turns, turn_digest(("z", "0"))) == turns  # slid out: all are newer


def test_a_reload_that_switches_memory_off_takes_the_commands_away(
        tmp_path: Path, fake_model: FakeModelServer) -> None:
    token = "static-token-for-the-memory-tests"
    config = {**model_config(fake_model.url), "auth": {"tokens": [token]}}
    built = build_gateway(Workspace(tmp_path / "ws"), parse_config(config))
    built.channels.start()
    try:
        def post(text: str) -> str:
            return str(built.app.test_client().post(
                "/api/v1/messages", json={"text": text},
                headers={"Authorization": f"Bearer {token}"}).json["reply"])

        assert post("/remember I like tea") == "I'll remember: I like tea"
        assert "/remember" in post("/help")
        built.apply_config(parse_config({**config, "memory": {"enabled": False}}))
        assert post("/remember I like coffee").startswith("There is no command /remember")
        assert "/remember" not in post("/help")
        built.apply_config(parse_config(config))
        assert post("/memory").startswith("What I remember about you (memory/owner.md)")
    finally:
        built.stop(5)
