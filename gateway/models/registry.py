"""The backend table: which client serves which `provider:`, and building the pools."""

from __future__ import annotations

from gateway.config import Config, ModelConfig
from gateway.models.base import Provider
from gateway.models.ollama_provider import OllamaProvider
from gateway.models.openai_provider import OpenAIProvider
from gateway.models.pool import ModelPool

PROVIDERS: dict[str, type[OllamaProvider] | type[OpenAIProvider]] = {
    "ollama": OllamaProvider,
    "openai": OpenAIProvider,
}


def build_providers(name: str, cfg: ModelConfig) -> list[Provider]:
    return [PROVIDERS[cfg.provider_for(url)](
        url, cfg.model or name, max_tokens=cfg.max_tokens, api_key=cfg.api_key or None,
        timeout=cfg.timeout, temperature=cfg.temperature) for url in cfg.all_endpoints()]


def build_pools(config: Config, config_hint: str) -> dict[str, ModelPool]:
    return {name: ModelPool(name, build_providers(name, cfg), config_hint=config_hint)
            for name, cfg in config.models.items()}
