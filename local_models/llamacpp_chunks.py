"""llama.cpp's streamed chat chunks -> Delta pieces and one Completion, with token log-probabilities.

The embedded server streams OpenAI-style chunks: one token per chunk with its log-probability
and `top_logprobs` alternatives (llama.cpp computes them over the whole vocabulary, before
sampling), then a chunk with the finish reason and one with the usage. Errors come as
{"error": {"code", "message", "type"}}.

The tokens reported match the transformers path's: the answer's tokens without the end token;
each with the `top_k` best alternatives; at the first position of a label call also every
label's first token (the label surface forms the backend tokenized), when llama.cpp ranked it
among the alternatives it was asked for. So `gateway.core.confidence` reads both alike.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.core.contracts import Completion, Delta, StreamEvent, TokenLogprob, Usage
from gateway.core.errors import GatewayError, InvalidArgument
from local_models.http_errors import status_error


@dataclass(eq=False)
class ChunkReader:
    """One answer, read chunk by chunk (on the engine's thread)."""

    provider: str
    model: str
    max_tokens: int
    context_length: int
    top_k: int  # alternatives kept per token
    label_ids: frozenset[int] = frozenset()  # first-position token ids kept beyond top_k (label tasks)
    accepted: float = 0.0  # time.monotonic() when the backend took the call
    text: str = ""
    tokens: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str = ""
    prompt_tokens: int = 0
    timings: Mapping[str, Any] = field(default_factory=dict)  # llama.cpp's latest: prompt_ms, predicted_ms ...
    first_at: float = 0.0  # when the first token arrived (time.monotonic)
    done: bool = False

    def add(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        """The events one chunk makes: a Delta when it carries text, the Completion once the answer is whole.

        Raises the gateway error for an error chunk, and InvalidArgument when the prompt and
        max_tokens together do not fit the context (found at the first token, before any text).
        """
        error = chunk.get("error")
        if isinstance(error, Mapping):
            raise _error(self.provider, error)
        timings = chunk.get("timings")
        if isinstance(timings, Mapping):
            self.timings = timings
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self.prompt_tokens = int(usage.get("prompt_tokens", self.prompt_tokens))
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or ():
            events.extend(self._choice(choice))
        if self.finish_reason and isinstance(usage, Mapping) and not self.done:
            self.done = True
            events.append(self.completion())
        return events

    def _choice(self, choice: Mapping[str, Any]) -> list[StreamEvent]:
        logprobs = choice.get("logprobs") or {}
        entries = logprobs.get("content") or ()
        if entries and not self.tokens:
            self.first_at = time.monotonic()
            self._check_context()
        for entry in entries:
            self.tokens.append(self._token(entry))
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        piece = (choice.get("delta") or {}).get("content") or ""
        if piece:
            self.text += piece
            return [Delta(piece)]
        return []

    def _check_context(self) -> None:
        prompt = int(self.timings.get("prompt_n", 0)) + int(self.timings.get("cache_n", 0))
        if prompt + self.max_tokens > self.context_length:
            raise InvalidArgument(
                f"max_tokens: prompt ({prompt} tokens) + max_tokens ({self.max_tokens}) exceeds the model's context "
                f"of {self.context_length} tokens; shorten the messages or lower max_tokens"
            )

    def _token(self, entry: Mapping[str, Any]) -> TokenLogprob:
        first = not self.tokens
        top: dict[str, float] = {}
        for rank, alt in enumerate(entry.get("top_logprobs") or ()):
            if rank < self.top_k or (first and int(alt.get("id", -1)) in self.label_ids):
                top.setdefault(str(alt["token"]), float(alt["logprob"]))
        return TokenLogprob(str(entry["token"]), float(entry["logprob"]), top)

    @property
    def queued_s(self) -> float | None:
        """From taking the call to its first model pass: the wait for a slot (the first token minus the prefill)."""
        if not (self.first_at and self.accepted):
            return None
        prefill = float(self.timings.get("prompt_ms", 0.0)) / 1000
        return max(self.first_at - self.accepted - prefill, 0.0)

    def completion(self) -> Completion:
        return Completion(
            text=self.text,
            provider=self.provider,
            model=self.model,
            usage=Usage(self.prompt_tokens, len(self.tokens)),
            finish_reason=self.finish_reason,
            tokens=tuple(self.tokens),
            queued_s=self.queued_s,
        )


def _error(provider: str, error: Mapping[str, Any]) -> GatewayError:
    code = error.get("code")
    status = code if isinstance(code, int) else 500
    return status_error(provider, status, str(error.get("message", error)))
