"""xAI (Grok) over the OpenAI SDK pointed at xAI's OpenAI-compatible API."""

from __future__ import annotations

from gateway.remote.providers.openai import OpenAIProvider


class XAIProvider(OpenAIProvider):
    default_model = "grok-3-mini"
    default_base_url = "https://api.x.ai/v1"
    default_key_env = "XAI_API_KEY"
    default_top_logprobs = 0  # not every Grok model returns logprobs; set top_logprobs in config to ask
    max_tokens_field = "max_tokens"
