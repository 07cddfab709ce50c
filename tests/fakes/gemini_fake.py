"""Gemini generateContent on the wire.

POST {origin}/v1beta/models/{model}:generateContent (JSON) and
:streamGenerateContent?alt=sse (SSE of GenerateContentResponse chunks), with
usageMetadata and, when asked, logprobsResult. A generationConfig with `responseJsonSchema` or
`responseSchema` must also set `responseMimeType: application/json` (else a 400, as the API answers).
Function declarations, functionCall and functionResponse parts as the API takes and answers them
(tests/fakes/tool_wire.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes import tool_wire
from tests.fakes.base import FakeProviderServer, pieces_of, sse


@dataclass
class FakeGemini(FakeProviderServer):
    @property
    def base_url(self) -> str:
        return self.origin

    def route(self, request: web.Request, body: dict[str, Any]) -> tuple[bool, str] | None:
        path = request.path
        if request.method != "POST" or "/models/" not in path or ":" not in path:
            return None
        model, _, method = path.split("/models/", 1)[1].partition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return None
        return method == "streamGenerateContent", model

    def rejects(self, body: dict[str, Any]) -> bool:
        if tool_wire.gemini_rejects(body):
            return True
        config = body.get("generationConfig", {})
        schema = "responseJsonSchema" in config or "responseSchema" in config
        return schema and config.get("responseMimeType") != "application/json"

    def _usage(self, body: dict[str, Any]) -> dict[str, int]:
        texts = [str(part.get("text", "")) for content in body.get("contents", []) for part in content.get("parts", [])]
        system = body.get("systemInstruction") or body.get("system_instruction")
        if system:  # the system instruction leads the prompt (what implicit caching matches first)
            texts[:0] = [str(part.get("text", "")) for part in system.get("parts", [])]
        prompt, completion = self.prompt_tokens(texts), len(pieces_of(self._text(body)))
        self.last_usage = (prompt, completion)
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": completion, "totalTokenCount": prompt + completion}
        cached = self.cached_prefix(texts)
        if cached:  # implicit caching: part of promptTokenCount, reported apart
            usage["cachedContentTokenCount"] = cached
        return usage

    def _candidate(self, text: str, body: dict[str, Any], pieces: list[str], finish: str | None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        config = body.get("generationConfig", {})
        if config.get("responseLogprobs"):
            top = int(config.get("logprobs") or 0)
            chosen = [{"token": p, "logProbability": math.log(0.9)} for p in pieces]
            candidate["logprobsResult"] = {
                "chosenCandidates": chosen,
                "topCandidates": [
                    {
                        "candidates": [{"token": p, "logProbability": math.log(0.9)}]
                        + [{"token": f"alt{i}", "logProbability": math.log(0.05)} for i in range(top - 1)]
                    }
                    for p in pieces
                ],
            }
        return candidate

    def _text(self, body: dict[str, Any]) -> str:
        """The reply up to the first of `generationConfig.stopSequences` (Gemini then finishes with STOP)."""
        return self.reply.until(body.get("generationConfig", {}).get("stopSequences"))[0]

    def _calls(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """A candidate calling the client's functions (functionCall parts), when the reply has tool calls."""
        parts = tool_wire.gemini_parts(self.reply, body)
        if not parts:
            return None
        return {"content": {"parts": parts, "role": "model"}, "index": 0, "finishReason": "STOP"}

    def completion(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        calls = self._calls(body)
        if calls is not None:
            return {
                "candidates": [calls],
                "usageMetadata": self._usage(body),
                "modelVersion": self.reply.model or model,
            }
        text = self._text(body)
        pieces = pieces_of(text)
        return {
            "candidates": [self._candidate(text, body, pieces, "STOP")],
            "usageMetadata": self._usage(body),
            "modelVersion": self.reply.model or model,
        }

    def stream_frames(self, body: dict[str, Any], model: str) -> list[str]:
        calls = self._calls(body)
        if calls is not None:  # Gemini streams each call whole
            return [sse(self.completion(body, model))]
        pieces = pieces_of(self._text(body))
        usage = self._usage(body)
        frames = []
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            chunk: dict[str, Any] = {
                "candidates": [self._candidate(piece, body, [piece], "STOP" if last else None)],
                "modelVersion": self.reply.model or model,
                "usageMetadata": usage if last else {"promptTokenCount": usage["promptTokenCount"]},
            }
            frames.append(sse(chunk))
        return frames

    def error_body(self, status: int) -> dict[str, Any]:
        names = {
            429: "RESOURCE_EXHAUSTED",
            503: "UNAVAILABLE",
            500: "INTERNAL",
            400: "INVALID_ARGUMENT",
            404: "NOT_FOUND",
        }
        error: dict[str, Any] = {
            "code": status,
            "message": f"fake error {status}",
            "status": names.get(status, "UNKNOWN"),
        }
        if status == 429:  # the Gemini API says how long to wait in the body (google.rpc.RetryInfo)
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]
        return {"error": error}
