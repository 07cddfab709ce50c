"""OpenAI chat completions on the wire (also xAI, and TGI-flavoured for Hugging Face).

POST {origin}/v1/chat/completions, JSON or SSE (`stream: true`, usage in the
last chunk when `stream_options.include_usage`); logprobs when asked. A `response_format` must be
{"type": "json_object"} or {"type": "json_schema", "json_schema": {"name", "schema"}} (TGI: {"type":
"json_object", "value": schema}), else a 400, as the API answers; the reply is then the JSON the test set.
Tools, tool calls and tool turns as OpenAI's API takes and answers them (tests/fakes/tool_wire.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import tool_wire
from tests.fakes.base import FakeProviderServer, pieces_of, sse


@dataclass
class FakeOpenAI(FakeProviderServer):
    tgi: bool = False  # Hugging Face TGI flavour: no `bytes`, a system_fingerprint

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def route(self, request: web.Request, body: dict[str, Any]) -> tuple[bool, str] | None:
        if request.method != "POST" or not request.path.endswith("/chat/completions"):
            return None
        return bool(body.get("stream")), str(body.get("model", ""))

    def rejects(self, body: dict[str, Any]) -> bool:
        """A response_format the API would refuse (400); TGI takes its own grammar form, {"type": "json_object"
        or "json", "value": schema}, and nothing else."""
        if tool_wire.openai_rejects(body):
            return True
        fmt = body.get("response_format")
        if fmt is None:
            return False
        if self.tgi:
            return fmt.get("type") not in ("json_object", "json") or not isinstance(fmt.get("value"), dict)
        if fmt.get("type") in ("text", "json_object"):
            return False
        spec = fmt.get("json_schema") or {}
        return fmt.get("type") != "json_schema" or not spec.get("name") or not isinstance(spec.get("schema"), dict)

    def _usage(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = [str(m.get("content", "")) for m in body.get("messages", [])]
        prompt = self.prompt_tokens(texts)
        completion = len(pieces_of(self.reply.until(body.get("stop"))[0]))
        self.last_usage = (prompt, completion)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        cached = self.cached_prefix(texts)
        if self.prompt_cache_min and not self.tgi:  # as OpenAI and xAI report it (cached tokens are in prompt_tokens)
            usage["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
        return usage

    def _logprob(self, piece: str, rank: int) -> dict[str, Any]:
        entry: dict[str, Any] = {"token": piece, "logprob": math.log(0.9 if rank == 0 else 0.05)}
        if not self.tgi:
            entry["bytes"] = list(piece.encode())
        return entry

    def _token_logprobs(self, piece: str, top: int) -> dict[str, Any]:
        entry = self._logprob(piece, 0)
        entry["top_logprobs"] = [self._logprob(piece, 0)] + [self._logprob(f"alt{i}", i + 1) for i in range(top - 1)]
        return entry

    def _head(self, model: str, kind: str) -> dict[str, Any]:
        head: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": kind,
            "created": int(time.time()),
            "model": self.reply.model or model,
        }
        if self.tgi:
            head["system_fingerprint"] = "3.0.0-native"
        return head

    def completion(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        text, _ = self.reply.until(body.get("stop"))  # `stop`: the answer ends before it, finish_reason "stop"
        pieces = pieces_of(text)
        logprobs = None
        if body.get("logprobs"):
            top = int(body.get("top_logprobs") or 0)
            logprobs = {"content": [self._token_logprobs(p, top) for p in pieces]}
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": logprobs,
            "finish_reason": "stop",
        }
        calls = tool_wire.openai_calls(self.reply, body)
        if calls:  # the model calls tools: no text, as the API answers
            choice.update(
                message={"role": "assistant", "content": None, "tool_calls": calls}, finish_reason="tool_calls"
            )
            choice["logprobs"] = None
        return {**self._head(model, "chat.completion"), "choices": [choice], "usage": self._usage(body)}

    def stream_frames(self, body: dict[str, Any], model: str) -> list[str]:
        head = self._head(model, "chat.completion.chunk")
        frames = [
            sse(
                {
                    **head,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                }
            )
        ]
        top = int(body.get("top_logprobs") or 0)
        calls = tool_wire.openai_calls(self.reply, body)
        for delta in tool_wire.openai_deltas(calls):
            frames.append(
                sse({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]})
            )
        for piece in pieces_of(self.reply.until(body.get("stop"))[0]) if not calls else ():
            logprobs = {"content": [self._token_logprobs(piece, top)]} if body.get("logprobs") else None
            choice = {"index": 0, "delta": {"content": piece}, "logprobs": logprobs, "finish_reason": None}
            frames.append(sse({**head, "choices": [choice]}))
        finish = "tool_calls" if calls else "stop"
        frames.append(sse({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
        if (body.get("stream_options") or {}).get("include_usage"):
            frames.append(sse({**head, "choices": [], "usage": self._usage(body)}))
        frames.append("data: [DONE]\n\n")
        return frames

    def error_body(self, status: int) -> dict[str, Any]:
        if self.tgi:
            return {"error": f"fake error {status}", "error_type": "overloaded" if status >= 500 else "validation"}
        kind = "rate_limit_exceeded" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
        return {"error": {"message": f"fake error {status}", "type": kind, "param": None, "code": kind}}


@dataclass
class CountingOpenAI(FakeOpenAI):
    """The OpenAI stand-in, keeping the token total of every answer it sent."""

    served: list[int] = field(default_factory=list)

    def _usage(self, body: dict[str, Any]) -> dict[str, Any]:
        usage = super()._usage(body)
        self.served.append(usage["total_tokens"])
        return usage
