"""Hugging Face chat completion over `huggingface_hub.AsyncInferenceClient`.

base_url is the OpenAI-compatible root (the HF router by default, or a TGI /
Inference Endpoint URL); the model goes in the request body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.config import ProviderConfig
from gateway.core.contracts import BackendCall, Completion, Delta, StreamEvent
from gateway.core.openai_wire import ChunkAccumulator, read_completion, tool_params
from gateway.core.structured import schema_of
from gateway.remote.providers.errors import map_error
from gateway.remote.providers.messages import chat_dicts

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
DEFAULT_BASE_URL = "https://router.huggingface.co/v1"
DEFAULT_KEY_ENV = "HF_TOKEN"


class HuggingFaceProvider:
    def __init__(self, name: str, config: ProviderConfig, api_key: str) -> None:
        from huggingface_hub import AsyncInferenceClient

        self.name = name
        self.model = config.model or DEFAULT_MODEL
        self.base_url = config.base_url or DEFAULT_BASE_URL
        self._key_env = config.api_key_env or DEFAULT_KEY_ENV
        self._secret = api_key
        self._top_logprobs = config.top_logprobs or 0  # the router's backends differ: off unless asked
        # AsyncInferenceClient does not retry; the gateway owns retries.
        self._client = AsyncInferenceClient(base_url=self.base_url, api_key=api_key, timeout=config.timeout_s)

    def _params(self, call: BackendCall) -> dict[str, Any]:
        params: dict[str, Any] = {
            "messages": chat_dicts(call.messages),
            "model": call.model or self.model,
            "max_tokens": call.max_tokens,
            "temperature": call.temperature,
        }
        if self._top_logprobs > 0:
            params["logprobs"] = True
            params["top_logprobs"] = self._top_logprobs
        if call.stop:
            params["stop"] = list(call.stop)
        if call.response_format is not None:
            # OpenAI's json_schema form, always with a schema (json_object: {"type": "object"}); the SDK turns it
            # into what the serving provider takes (TGI: {"type": "json_object", "value": schema})
            fmt = call.response_format
            schema = {"name": fmt.name, "schema": schema_of(fmt), "strict": fmt.strict}
            params["response_format"] = {"type": "json_schema", "json_schema": schema}
        # tools and tool_choice in OpenAI's form (chat_completion's own parameters); parallel_tool_calls, which it
        # does not name, through its extra_body
        tooling = tool_params(call)
        parallel = tooling.pop("parallel_tool_calls", None)
        params.update(tooling)
        if parallel is not None:
            params["extra_body"] = {"parallel_tool_calls": parallel}
        return params

    async def generate(self, call: BackendCall) -> Completion:
        try:
            response = await self._client.chat_completion(**self._params(call))
            return read_completion(response, self.name, call.model or self.model)
        except Exception as exc:
            raise map_error(self.name, exc, key_env=self._key_env, secret=self._secret) from exc

    async def stream(self, call: BackendCall) -> AsyncIterator[StreamEvent]:
        reader = ChunkAccumulator(self.name, call.model or self.model)
        try:
            params = {**self._params(call), "stream": True, "stream_options": {"include_usage": True}}
            chunks = await self._client.chat_completion(**params)
            async for chunk in chunks:
                text = reader.add(chunk)
                if text or reader.tool_pieces:
                    yield Delta(text, reader.tool_pieces)
        except Exception as exc:
            raise map_error(self.name, exc, key_env=self._key_env, secret=self._secret) from exc
        yield reader.completion()

    async def aclose(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]
