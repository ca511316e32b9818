"""What the owner told the assistant to keep: facts per owner, in `memory/<owner>.md`.

Who owns a message's memory (`Owners`): on a chat platform the sender, as `<channel>:<sender
id>`, once the stranger policy knows them (in `security.allowlist` or approved in the store by
their pairing code); elsewhere the principal the credential proved. Every token the gateway
knows (`token:<label>`: config.yaml's, the console's sign-in, the tray's, the CLI's) was made by
the gateway's owner, so they share one memory, `owner`; a JWT names a person (`jwt:<sub>`).
`memory.owners` links several identities to one named memory (the owner's Telegram account and
their tokens share what they told either) or gives a token a memory of its own; an identity
listed there is one the owner vouched for. Anyone else, an unverified stranger on a chat
platform above all (they can talk when `security.stranger_mode` is `open`), has no memory:
nothing of theirs is written or recalled.

`Memory` keeps the files and the index (`memory_index`) in step: each write goes to the file
(atomically) and then to the index; an edit by hand reaches the index through `sync`, which
the file watcher calls. Writes of one owner are serialised, and each re-reads the file first,
so an edit by hand made meanwhile is kept.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gateway.assistant.memory_file import Fact, FactsFile, clean_fact
from gateway.assistant.memory_index import Found, MemoryIndex
from gateway.assistant.options import OWNER_NAME
from gateway.core.message import Message
from gateway.core.settings import Settings
from gateway.guards.stranger import SenderBook

log = logging.getLogger(__name__)


GATEWAY_OWNER = "owner"  # the memory every token of the gateway's owner shares


class MemoryFull(ValueError):
    """The owner has `memory.max_facts` facts already."""


class Owners:
    """Whose memory a message reads and writes, or None for a sender who has none."""

    def __init__(self, senders: SenderBook, platforms: frozenset[str]) -> None:
        self.senders = senders
        self.platforms = platforms  # channels whose senders are people (`chat_platforms`)

    def identity(self, msg: Message) -> str:
        if msg.channel in self.platforms:
            return f"{msg.channel}:{msg.sender}"
        return msg.principal

    def owner_of(self, msg: Message, settings: Settings) -> str | None:
        config = settings.config.memory
        identity = self.identity(msg)
        if not config.enabled or not identity or identity.endswith(":"):
            return None
        for name, identities in config.owners.items():
            if identity in identities:
                return name
        if msg.channel in self.platforms and not self._known(msg, settings):
            return None  # an unverified stranger: never written, never recalled
        if identity.startswith("token:"):
            return GATEWAY_OWNER
        return owner_name(identity)

    def _known(self, msg: Message, settings: Settings) -> bool:
        if f"{msg.channel}:{msg.sender}" in settings.config.security.allowlist:
            return True
        row = self.senders.sender(msg.channel, msg.sender)
        return row is not None and row.state == "approved"


def owner_name(identity: str) -> str:
    """The file name an identity's memory gets by default: `jwt:ada` -> `jwt-ada`.
    Characters a file name should not carry become `_`, with a digest so two never meet."""
    name = identity.replace(":", "-", 1)
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)
    if safe != name or not OWNER_NAME.match(safe):
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        safe = f"{safe[:48].lstrip('._-') or 'owner'}-{digest}"
    return safe


class Memory:
    def __init__(self, folder: Path, index: MemoryIndex,
                 clock: Callable[[], float] = time.time) -> None:
        self.folder = folder
        self.index = index
        self.clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def path(self, owner: str) -> Path:
        if not OWNER_NAME.match(owner):
            raise ValueError(f"{owner!r} is not an owner's name")
        return self.folder / f"{owner}.md"

    def owners(self) -> list[str]:
        """Every owner with a facts file."""
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.md") if OWNER_NAME.match(p.stem))

    def facts(self, owner: str) -> list[Fact]:
        return FactsFile.read(self.path(owner)).facts

    def today(self) -> str:
        return time.strftime("%Y-%m-%d", time.localtime(self.clock()))

    # -- writing -------------------------------------------------------------------------
    def remember(self, owner: str, text: str, max_facts: int) -> Fact:
        """Keep one fact (dated today); raises ValueError (MemoryFull) with what to do. The
        same fact told again is kept once, with the new date."""
        fact = Fact(clean_fact(text), self.today())
        with self._lock(owner):
            file = FactsFile.read(self.path(owner))
            same = [f.text.casefold() != fact.text.casefold() for f in file.facts]
            file.remove(same)
            if len(file.facts) >= max_facts:
                raise MemoryFull(f"Memory holds {max_facts} facts already (memory.max_facts): "
                                 "forget some first (/memory lists them).")
            file.add(fact)
            self._write(owner, file)
        return fact

    def forget(self, owner: str, what: str) -> list[Fact]:
        """Erase the facts containing `what` (any case), or the fact numbered `what` as
        /memory lists them; returns what was erased."""
        what = " ".join(what.split())
        with self._lock(owner):
            file = FactsFile.read(self.path(owner))
            facts = file.facts
            if what.isdigit() and 1 <= int(what) <= len(facts):
                keep = [i != int(what) - 1 for i in range(len(facts))]
            else:
                keep = [what.casefold() not in f.text.casefold() for f in facts]
            gone = [f for f, k in zip(facts, keep, strict=True) if not k]
            if gone:
                file.remove(keep)
                self._write(owner, file)
        return gone

    def forget_all(self, owner: str) -> int:
        """Erase the owner's memory: the file is deleted and the index rows go with it."""
        with self._lock(owner):
            path = self.path(owner)
            count = len(FactsFile.read(path).facts)
            path.unlink(missing_ok=True)
            self.index.drop(owner)
        log.info("memory of %s erased (%d facts)", owner, count)
        return count

    def change(self, owner: str, position: int, was: str, text: str | None) -> Fact:
        """The console's edit (`text`) or erase (`text` None) of the fact at `position`,
        refused (ValueError) if the file no longer has `was` there (edited meanwhile)."""
        with self._lock(owner):
            file = FactsFile.read(self.path(owner))
            facts = file.facts
            if not 0 <= position < len(facts) or facts[position].text != was:
                raise ValueError("That fact changed since the page was loaded; reload it.")
            if text is None:
                file.remove([i != position for i in range(len(facts))])
                fact = facts[position]
            else:
                fact = Fact(clean_fact(text), facts[position].day)
                file.replace(position, fact)
            self._write(owner, file)
        return fact

    def _write(self, owner: str, file: FactsFile) -> None:
        path = self.path(owner)
        file.write(path)
        self.index.put(owner, file.facts, _digest(file.render()))

    def _lock(self, owner: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(owner, threading.Lock())

    # -- reading -------------------------------------------------------------------------
    def recall(self, owner: str, text: str, limit: int) -> list[Found]:
        """Up to `limit` facts for a message: those matching its words (best first), then the
        newest others, so standing facts ("I prefer short answers") come along too."""
        found = self.index.search(owner, text, limit)
        have = {f.position for f in found}
        found += [f for f in self.index.newest(owner, limit) if f.position not in have]
        return found[:limit]

    def sync(self) -> list[str]:
        """Bring the index in step with the files (at start, after an edit by hand): owners
        whose file changed are indexed again, owners whose file is gone are dropped. Returns
        the owners re-indexed or dropped."""
        changed: list[str] = []
        on_disk = set(self.owners())
        for owner in sorted(on_disk):
            with self._lock(owner):
                try:
                    text = self.path(owner).read_text(encoding="utf-8", errors="replace")
                except FileNotFoundError:
                    on_disk.discard(owner)
                    continue
                if self.index.digest(owner) != _digest(text):
                    self.index.put(owner, FactsFile.parse(text).facts, _digest(text))
                    changed.append(owner)
        for owner in set(self.index.owners()) - on_disk:
            self.index.drop(owner)
            changed.append(owner)
        if changed:
            log.info("memory re-indexed: %s", ", ".join(changed))
        return changed


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
