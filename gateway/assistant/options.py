"""`memory:` in config.yaml: whether the gateway keeps the owner's facts, who owns them, how
many go to the model, and whether old turns are summarised instead of dropped."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from gateway.common.options import Section

OWNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
IDENTITY = re.compile(r"^[a-z][a-z0-9_]*:\S+$")


class MemoryConfig(Section):
    enabled: bool = Field(True, description="keep facts the owner states (/remember, the "
                          "memory tool, the console) and give the relevant ones to the model")
    owners: dict[str, list[str]] = Field(
        default_factory=dict, description="one memory for several identities, e.g. {ada: "
        "[\"token:config\", \"telegram:12345\"]}: a chat platform's sender as <channel>:<id>, "
        "a credential's principal as the trace's guard step names it (token:<label>, "
        "jwt:<sub>); tokens not listed share the memory 'owner'")
    recall: int = Field(5, ge=0, le=50, description="facts at most given to the model with a "
                        "message: the best matches, then the newest")
    max_facts: int = Field(1000, ge=1, le=100_000, description="facts kept per owner; "
                           "/remember past it says to forget some first")
    summaries: bool = Field(True, description="summarise a long conversation's older turns "
                            "(one model call in the background) instead of dropping them")

    @field_validator("owners")
    @classmethod
    def _owners(cls, owners: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: dict[str, str] = {}
        for name, identities in owners.items():
            if not OWNER_NAME.match(name):
                raise ValueError(f"owner name {name!r} is used as a file name (memory/"
                                 f"<owner>.md): letters, digits, '.', '_' and '-', at most 64")
            for identity in identities:
                if not IDENTITY.match(identity):
                    raise ValueError(f"{name}: {identity!r} is not an identity: write "
                                     "<channel>:<sender id> (telegram:12345) or the principal "
                                     "(token:config, jwt:ada)")
                if identity in seen and seen[identity] != name:
                    raise ValueError(f"{identity!r} is listed under both {seen[identity]!r} "
                                     f"and {name!r}: one identity has one memory")
                seen[identity] = name
        return owners

    @model_validator(mode="after")
    def _linked_owners_keep_memory(self) -> MemoryConfig:
        if self.owners and not self.enabled:
            raise ValueError("memory.owners is set but memory.enabled is false: remove one")
        return self
