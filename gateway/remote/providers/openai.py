"""OpenAI chat completions over the official async SDK (`openai`), with token logprobs.

A plain answer goes through the SDK's generic `post` (its documented way to send
a body as is: "Undocumented endpoints" in its README) to the same path, with the
same client, auth, timeout and errors as `chat.completions.create`, and is read
straight from the response's JSON. `create` first walks every parameter against
the SDK's TypedDicts (a no-op for the plain values sent here) and builds its
answer into pydantic models: together that cost more CPU than the rest of the
gateway's work on a forwarded request (docs/benchmarks.md, remote-path CPU).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from gateway.config import ProviderConfig
from gateway.core.contracts import BackendCall, Completion, Delta, StreamEvent
from gateway.core.openai_wire import ChunkAccumulator, read_completion, response_format, tool_params
from gateway.remote.providers.errors import map_error
from gateway.remote.providers.messages import chat_dicts


class OpenAIProvider:
    """Also the base for OpenAI-compatible APIs (xAI): they differ only in these defaults."""

    default_model = "gpt-4o-mini"
    default_base_url = "https://api.openai.com/v1"
    default_key_env = "OPENAI_API_KEY"
    default_top_logprobs = 5
    max_tokens_field = "max_completion_tokens"

    def __init__(self, name: str, config: ProviderConfig, api_key: str) -> None:
        import httpx2  # the SDK's HTTP library (its dependency)
        import openai

        self.name = name
        self.model = config.model or self.default_model
        self.base_url = config.base_url or self.default_base_url
        self._key_env = config.api_key_env or self.default_key_env
        self._secret = api_key
        self._top_logprobs = self.default_top_logprobs if config.top_logprobs is None else config.top_logprobs
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=self.base_url,
            timeout=config.timeout_s,
            max_retries=0,  # the gateway owns retries
            # The SDK's aiohttp transport (its `aiohttp` extra): the same requests, errors and timeouts as its
            # default httpx transport, for less CPU per call.
            http_client=openai.DefaultAioHttpClient(timeout=config.timeout_s),
        )
        # Bound once (this also imports the SDK's lazy modules now, not inside the first deadline).
        self._create = self._client.chat.completions.create
        self._post = self._client.post
        self._raw = httpx2.Response

    def _params(self, call: BackendCall) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": call.model or self.model,
            "messages": chat_dicts(call.messages),
            self.max_tokens_field: call.max_tokens,
            "temperature": call.temperature,
        }
        if self._top_logprobs > 0:
            params["logprobs"] = True
            params["top_logprobs"] = self._top_logprobs
        if call.stop:
            params["stop"] = list(call.stop)
        if call.response_format is not None:
            params["response_format"] = response_format(call.response_format)
        params.update(tool_params(call))
        return params

    async def generate(self, call: BackendCall) -> Completion:
        try:
            response = await self._post(
                "/chat/completions",
                cast_to=self._raw,
                body=self._params(call),
                options={"security": {"bearer_auth": True}},  # the auth chat.completions.create asks for
            )
            return read_completion(json.loads(response.content), self.name, call.model or self.model)
        except Exception as exc:
            raise map_error(self.name, exc, key_env=self._key_env, secret=self._secret) from exc

    async def stream(self, call: BackendCall) -> AsyncIterator[StreamEvent]:
        reader = ChunkAccumulator(self.name, call.model or self.model)
        try:
            chunks = await self._create(**self._params(call), stream=True, stream_options={"include_usage": True})
            async with chunks:
                async for chunk in chunks:
                    text = reader.add(chunk)
                    if text or reader.tool_pieces:
                        yield Delta(text, reader.tool_pieces)
        except Exception as exc:
            raise map_error(self.name, exc, key_env=self._key_env, secret=self._secret) from exc
        yield reader.completion()

    async def aclose(self) -> None:
        await self._client.close()
