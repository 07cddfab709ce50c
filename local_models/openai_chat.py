"""OpenAI chat-completions wire format as plain JSON: request bodies and streamed chunks.

Pure functions over dicts, shared by HTTP backends that speak the OpenAI API
(vLLM). Nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.core.contracts import BackendCall, Completion, TokenLogprob, Usage


def chat_body(call: BackendCall, model: str, *, top_logprobs: int, stream: bool = True) -> dict[str, Any]:
    """The /v1/chat/completions body for one call; logprobs are always asked for."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role.value, "content": m.content} for m in call.messages],
        "max_tokens": call.max_tokens,
        "temperature": max(call.temperature, 0.0),
        "logprobs": True,
        "top_logprobs": top_logprobs,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def read_tokens(content: Any) -> list[TokenLogprob]:
    """`choices[i].logprobs.content` -> TokenLogprob, each with its top alternatives."""
    tokens: list[TokenLogprob] = []
    for entry in content or ():
        top = {str(alt["token"]): float(alt["logprob"]) for alt in entry.get("top_logprobs") or ()}
        tokens.append(TokenLogprob(str(entry["token"]), _finite(entry["logprob"]), top))
    return tokens


def _finite(value: Any) -> float:
    """Log-probabilities of impossible tokens (-Infinity on the wire) are clamped to -9999, as vLLM does."""
    return max(float(value), -9999.0)


def parse_sse_line(line: str) -> Mapping[str, Any] | None:
    """One `data: {...}` line of a server-sent event stream -> its JSON; None for the rest and [DONE]."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    parsed = json.loads(data)
    return parsed if isinstance(parsed, dict) else None


@dataclass
class ChunkAccumulator:
    """Collects streamed chunks into the final Completion; `add` returns the new text of each chunk."""

    provider: str
    model: str
    text: str = ""
    tokens: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str = ""
    usage: Usage = field(default_factory=Usage)

    def add(self, chunk: Mapping[str, Any]) -> str:
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        piece = ""
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or choice.get("message") or {}
            piece += delta.get("content") or ""
            logprobs = choice.get("logprobs") or {}
            self.tokens.extend(read_tokens(logprobs.get("content")))
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        self.text += piece
        return piece

    def completion(self) -> Completion:
        usage = self.usage
        if usage.completion_tokens == 0 and self.tokens:
            usage = Usage(usage.prompt_tokens, len(self.tokens))
        return Completion(
            text=self.text,
            provider=self.provider,
            model=self.model,
            usage=usage,
            finish_reason=self.finish_reason or "stop",
            tokens=tuple(self.tokens),
        )
