"""Anthropic messages on the wire: POST {origin}/v1/messages, JSON or SSE events, with usage.

A request that forces a tool (`tool_choice: {"type": "tool", "name"}`, the tool in `tools`) is answered
with that tool's `tool_use` block, whose input is the reply (JSON text), and stop_reason "tool_use",
streamed as `input_json_delta` pieces, as the Messages API does.
"""

from __future__ import annotations

import json
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

    @staticmethod
    def forced_tool(body: dict[str, Any]) -> str | None:
        """The tool the request forces, when it forces one of its tools."""
        choice = body.get("tool_choice") or {}
        names = {tool.get("name") for tool in body.get("tools") or ()}
        if choice.get("type") == "tool" and choice.get("name") in names:
            return str(choice["name"])
        return None

    def completion(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        prompt, completion = self._usage(body)
        tool = self.forced_tool(body)
        if tool is not None:
            block = {"type": "tool_use", "id": "toolu_fake", "name": tool, "input": json.loads(self.reply.text)}
            return self._message(model, [block], "tool_use", {"input_tokens": prompt, "output_tokens": completion})
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
        tool = self.forced_tool(body)
        if tool is not None:
            block = {"type": "tool_use", "id": "toolu_fake", "name": tool, "input": {}}
            frames[1] = sse({"type": "content_block_start", "index": 0, "content_block": block}, "content_block_start")
            text, sequence = self.reply.text, None
        for piece in pieces_of(text):
            kind = ("input_json_delta", "partial_json") if tool is not None else ("text_delta", "text")
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": kind[0], kind[1]: piece}}
            frames.append(sse(delta, "content_block_delta"))
        frames.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        end = {
            "type": "message_delta",
            "delta": {
                "stop_reason": "tool_use" if tool else "stop_sequence" if sequence else "end_turn",
                "stop_sequence": sequence,
            },
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
