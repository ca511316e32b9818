"""What a model says about itself: how much context it takes and whether it can call tools.

Ollama answers `POST /api/show {"model": name}` with `model_info` (`<arch>.context_length`: the
length it was trained for), `capabilities` (`["completion", "tools", "vision"]`, in Ollama
0.6.4 and later) and `parameters` (the Modelfile's `num_ctx 8192` lines: the window its owner
chose, kept as a cap because a model's trained length, 128k for many, would ask for a KV cache
most machines do not have). An OpenAI-compatible server has no such call: there, config says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

SHOW_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
_NUM_CTX = re.compile(r"^\s*num_ctx\s+(\d+)\s*$", re.MULTILINE)


class CardUnavailable(Exception):
    """The model server did not say (down, refused, an answer without the fields)."""


@dataclass(frozen=True)
class ModelCard:
    """One endpoint's model as it described itself. `None` fields: it did not say."""

    context_length: int | None = None  # the trained length (model_info)
    modelfile_ctx: int | None = None  # the Modelfile's `num_ctx`, the owner's chosen window
    tools: bool | None = None  # "tools" in capabilities; None for an Ollama without the field
    failed: str = ""  # why the card could not be read ("" when it was)

    @property
    def window(self) -> int | None:
        """The most this model takes: its trained length, or its Modelfile's window if less."""
        known = [n for n in (self.context_length, self.modelfile_ctx) if n]
        return min(known) if known else None


def parse_show(data: Any) -> ModelCard:
    """The card in an `/api/show` answer; CardUnavailable if it is not one."""
    if not isinstance(data, dict):
        raise CardUnavailable("/api/show answered something that is not a JSON object")
    info = data.get("model_info") or {}
    lengths = [v for k, v in info.items() if k.endswith(".context_length")
               and isinstance(v, int) and v > 0] if isinstance(info, dict) else []
    found = _NUM_CTX.search(str(data.get("parameters") or ""))
    capabilities = data.get("capabilities")
    return ModelCard(context_length=min(lengths) if lengths else None,
                     modelfile_ctx=int(found.group(1)) if found else None,
                     tools=("tools" in capabilities) if isinstance(capabilities, list) else None)


def read_card(url: str, model: str, api_key: str | None = None,
              timeout: httpx.Timeout = SHOW_TIMEOUT) -> ModelCard:
    """Ask an Ollama server for `model`'s card. Cooperative under gevent (httpx sockets)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.post(f"{url.rstrip('/')}/api/show", json={"model": model},
                              headers=headers, timeout=timeout)
    except httpx.TimeoutException as e:
        raise CardUnavailable("/api/show timed out") from e
    except httpx.TransportError as e:
        raise CardUnavailable(f"/api/show could not be reached ({type(e).__name__})") from e
    if response.status_code != 200:
        raise CardUnavailable(f"/api/show answered HTTP {response.status_code}")
    try:
        return parse_show(response.json())
    except ValueError as e:
        raise CardUnavailable("/api/show answered something that is not JSON") from e
