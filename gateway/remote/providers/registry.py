"""Provider kinds -> their classes (imported only when built) and where their keys live."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.config import ProviderConfig
from gateway.core.contracts import Backend


@dataclass(frozen=True, slots=True)
class ProviderKind:
    factory: str  # "module:Class", constructed as Class(name, config, api_key)
    key_envs: tuple[str, ...]  # environment variables tried in order when api_key_env is empty
    extra: str  # the pip package that brings the SDK


PROVIDER_KINDS: Mapping[str, ProviderKind] = MappingProxyType(
    {
        "openai": ProviderKind("gateway.remote.providers.openai:OpenAIProvider", ("OPENAI_API_KEY",), "openai"),
        "anthropic": ProviderKind(
            "gateway.remote.providers.anthropic:AnthropicProvider", ("ANTHROPIC_API_KEY",), "anthropic"
        ),
        "google": ProviderKind(
            "gateway.remote.providers.google:GoogleProvider", ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "google-genai"
        ),
        "xai": ProviderKind("gateway.remote.providers.xai:XAIProvider", ("XAI_API_KEY",), "openai"),
        "huggingface": ProviderKind(
            "gateway.remote.providers.huggingface:HuggingFaceProvider",
            ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"),
            "huggingface_hub",
        ),
    }
)


def kind_of(name: str, config: ProviderConfig) -> str:
    return config.kind or name


def key_envs(name: str, config: ProviderConfig) -> tuple[str, ...]:
    if config.api_key_env:
        return (config.api_key_env,)
    kind = PROVIDER_KINDS.get(kind_of(name, config))
    return kind.key_envs if kind else ()


def find_key(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for var in names:
        value = env.get(var, "").strip()
        if value:
            return value
    return None


def build_provider(name: str, config: ProviderConfig, api_key: str) -> Backend:
    """Construct the provider; imports its SDK now. Raises KeyError for an unknown kind."""
    kind = PROVIDER_KINDS[kind_of(name, config)]
    module, _, class_name = kind.factory.partition(":")
    cls = getattr(importlib.import_module(module), class_name)
    return cls(name, config, api_key)  # type: ignore[operator, no-any-return]
