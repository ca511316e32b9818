"""The backend table: which client serves which `provider:`, and building the pools.

Backends are imported when a model uses them: the `openai` package alone adds ~14 MB to a
gateway that only talks to Ollama.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import TYPE_CHECKING

from gateway.models.base import Provider
from gateway.models.options import ModelConfig
from gateway.models.pool import ModelPool

if TYPE_CHECKING:
    from gateway.observe.metrics import Metrics

PROVIDERS: dict[str, str] = {
    "ollama": "gateway.models.ollama_provider:OllamaProvider",
    "openai": "gateway.models.openai_provider:OpenAIProvider",
}


def provider_class(name: str) -> type:
    module, _, attribute = PROVIDERS[name].partition(":")
    return getattr(import_module(module), attribute)


def build_providers(name: str, cfg: ModelConfig) -> list[Provider]:
    return [provider_class(cfg.provider_for(url))(
        url, cfg.model or name, max_tokens=cfg.max_tokens, api_key=cfg.api_key or None,
        timeout=cfg.timeout, temperature=cfg.temperature) for url in cfg.all_endpoints()]


def build_pools(models: Mapping[str, ModelConfig], config_hint: str,
                metrics: Metrics | None = None,
                context_tokens: int = 2048) -> dict[str, ModelPool]:
    """`context_tokens`: `gateway.context_tokens`, each pool's budget before its model's own."""
    return {name: ModelPool(name, build_providers(name, cfg), config_hint=config_hint,
                            metrics=metrics, config=cfg, context_tokens=context_tokens)
            for name, cfg in models.items()}
