"""Reading OpenAI-style chat completions (OpenAI, xAI, Hugging Face) into a Completion.

The OpenAI SDK's pydantic objects and huggingface_hub's dataclasses share the
same attribute names, so one reader serves both; `read_completion_json` reads
the same fields from the decoded JSON body (the OpenAI provider's raw answer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.core.contracts import Completion, TokenLogprob, Usage


def token_logprobs(logprobs: Any) -> list[TokenLogprob]:
    """choice.logprobs.content -> TokenLogprob list (empty when the provider sent none)."""
    content = getattr(logprobs, "content", None) or []
    out = []
    for item in content:
        top = {alt.token: float(alt.logprob) for alt in (getattr(item, "top_logprobs", None) or [])}
        out.append(TokenLogprob(item.token, float(item.logprob), top))
    return out


def usage_of(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    return Usage(int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0))


def read_completion(response: Any, provider: str, model: str) -> Completion:
    choice = response.choices[0] if response.choices else None
    text = (choice.message.content or "") if choice is not None else ""
    return Completion(
        text=text,
        provider=provider,
        model=getattr(response, "model", None) or model,
        usage=usage_of(getattr(response, "usage", None)),
        finish_reason=(getattr(choice, "finish_reason", None) or "stop") if choice is not None else "error",
        tokens=tuple(token_logprobs(getattr(choice, "logprobs", None))),
    )


def read_completion_json(body: Mapping[str, Any], provider: str, model: str) -> Completion:
    """The same Completion as `read_completion`, from the chat completion's JSON object."""
    choices = body.get("choices") or []
    choice = choices[0] if choices else None
    text = ((choice.get("message") or {}).get("content") or "") if choice is not None else ""
    usage = body.get("usage") or {}
    return Completion(
        text=text,
        provider=provider,
        model=body.get("model") or model,
        usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
        finish_reason=(choice.get("finish_reason") or "stop") if choice is not None else "error",
        tokens=tuple(_token_logprobs_json(choice.get("logprobs") if choice is not None else None)),
    )


def _token_logprobs_json(logprobs: Mapping[str, Any] | None) -> list[TokenLogprob]:
    content = (logprobs or {}).get("content") or []
    out = []
    for item in content:
        top = {alt["token"]: float(alt["logprob"]) for alt in (item.get("top_logprobs") or [])}
        out.append(TokenLogprob(item["token"], float(item["logprob"]), top))
    return out


class ChunkReader:
    """Folds streamed chat.completion.chunk objects; `add()` returns the new text of each."""

    def __init__(self, provider: str, model: str) -> None:
        self._provider = provider
        self._model = model
        self._parts: list[str] = []
        self._tokens: list[TokenLogprob] = []
        self._usage = Usage()
        self._finish = "stop"

    def add(self, chunk: Any) -> str:
        self._model = getattr(chunk, "model", None) or self._model
        if getattr(chunk, "usage", None) is not None:
            self._usage = usage_of(chunk.usage)
        text = ""
        for choice in getattr(chunk, "choices", None) or []:
            delta = getattr(choice, "delta", None)
            text += (getattr(delta, "content", None) or "") if delta is not None else ""
            self._tokens.extend(token_logprobs(getattr(choice, "logprobs", None)))
            if getattr(choice, "finish_reason", None):
                self._finish = choice.finish_reason
        self._parts.append(text)
        return text

    def completion(self) -> Completion:
        return Completion(
            "".join(self._parts), self._provider, self._model, self._usage, self._finish, tuple(self._tokens)
        )
