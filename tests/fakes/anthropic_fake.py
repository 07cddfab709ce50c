"""Anthropic messages on the wire: POST {origin}/v1/messages, JSON or SSE events, with usage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeProviderServer, pieces_of, sse


@dataclass
class FakeAnthropic(FakeProviderServer):
    @property
    def base_url(self) -> str:
        return self.origin

    def route(self, request: web.Request, body: dict[str, Any]) -> tuple[bool, str] | None:
        if request.method != "POST" or request.path != "/v1/messages":
            return None
        return bool(body.get("stream")), str(body.get("model", ""))

    def _usage(self, body: dict[str, Any]) -> tuple[int, int]:
        texts = [str(m.get("content", "")) for m in body.get("messages", [])]
        system = body.get("system")
        if system:
            texts.append(str(system))
        self.last_usage = (self.prompt_tokens(texts), len(pieces_of(self.reply.until(body.get("stop_sequences"))[0])))
        return self.last_usage

    def _message(
        self,
        model: str,
        content: list[dict[str, Any]],
        stop: str | None,
        usage: dict[str, int],
        sequence: str | None = None,
    ) -> dict[str, Any]:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": self.reply.model or model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": sequence,
            "usage": usage,
        }

    def completion(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        prompt, completion = self._usage(body)
        text, sequence = self.reply.until(body.get("stop_sequences"))
        content = [{"type": "text", "text": text}]
        usage = {"input_tokens": prompt, "output_tokens": completion}
        return self._message(model, content, "stop_sequence" if sequence else "end_turn", usage, sequence)

    def stream_frames(self, body: dict[str, Any], model: str) -> list[str]:
        prompt, completion = self._usage(body)
        start = self._message(model, [], None, {"input_tokens": prompt, "output_tokens": 1})
        frames = [
            sse({"type": "message_start", "message": start}, "message_start"),
            sse(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            ),
            sse({"type": "ping"}, "ping"),
        ]
        text, sequence = self.reply.until(body.get("stop_sequences"))
        for piece in pieces_of(text):
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
            frames.append(sse(delta, "content_block_delta"))
        frames.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        end = {
            "type": "message_delta",
            "delta": {"stop_reason": "stop_sequence" if sequence else "end_turn", "stop_sequence": sequence},
            "usage": {"output_tokens": completion},
        }
        frames.append(sse(end, "message_delta"))
        frames.append(sse({"type": "message_stop"}, "message_stop"))
        return frames

    def error_body(self, status: int) -> dict[str, Any]:
        kind = {
            429: "rate_limit_error",
            529: "overloaded_error",
            401: "authentication_error",
            400: "invalid_request_error",
        }
        return {"type": "error", "error": {"type": kind.get(status, "api_error"), "message": f"fake error {status}"}}
