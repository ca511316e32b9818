"""`models:` in config.yaml: one entry per model, as the guide writes it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.common.options import Duration, Section


class ModelConfig(Section):
    """One model as the guide writes it (`endpoint`, `api_key`, `max_tokens`), plus fail-over.

    `provider` is inferred when absent: an endpoint whose path ends in `/v1` speaks the OpenAI
    API, anything else is Ollama (the guide's snippet points at Ollama's port 11434).
    """

    endpoint: str | None = None
    endpoints: list[str] = Field(default_factory=list)
    api_key: str | None = None
    max_tokens: int = Field(512, gt=0)
    provider: Literal["ollama", "openai"] | None = None
    model: str | None = Field(None, description="name the backend knows; default: the key")
    temperature: float | None = Field(None, ge=0, le=2)
    timeout: Duration = 120.0
    vision: bool = Field(False, description="the model takes images: a sent image goes to it; "
                         "otherwise it and the sender are told it could not be seen")
    context_length: int | None = Field(
        None, ge=512, description="the most tokens this model takes (prompt and reply): "
        "caps the context sent and the num_ctx told to Ollama; overrides what Ollama's "
        "/api/show says; the only way to size an OpenAI-compatible server's model")
    tools: bool | None = Field(
        None, description="whether the model can call tools (skills, tools.offer_to_model, "
        "a client's functions); default: as Ollama's /api/show says, else yes")

    @model_validator(mode="after")
    def _has_endpoint(self) -> ModelConfig:
        if not self.endpoint and not self.endpoints:
            raise ValueError("give an endpoint, e.g. endpoint: \"http://127.0.0.1:11434\"")
        return self

    @model_validator(mode="after")
    def _reply_fits(self) -> ModelConfig:
        if self.context_length is not None and self.context_length < self.max_tokens + 256:
            raise ValueError(f"context_length {self.context_length} leaves no room for the "
                             f"conversation beside max_tokens {self.max_tokens}: raise "
                             "context_length or lower max_tokens")
        return self

    def all_endpoints(self) -> list[str]:
        """`endpoint` first, then `endpoints`, without repeats."""
        urls = ([self.endpoint] if self.endpoint else []) + self.endpoints
        return list(dict.fromkeys(u.rstrip("/") for u in urls))

    def provider_for(self, url: str) -> str:
        if self.provider:
            return self.provider
        return "openai" if url.rstrip("/").endswith("/v1") else "ollama"
