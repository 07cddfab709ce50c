"""Anthropic messages on the wire: POST {origin}/v1/messages, JSON or SSE events, with usage.

A request that forces a tool (`tool_choice: {"type": "tool", "name"}`, the tool in `tools`) is answered
with that tool's `tool_use` block, whose input is the reply (JSON text), and stop_reason "tool_use",
streamed as `input_json_delta` pieces, as the Messages API does. The client's own tools are answered with
tool_use blocks when the reply has tool calls (tests/fakes/tool_wire.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import tool_wire
from tests.fakes.base import FakeProviderServer, pieces_of, sse


@dataclass
class FakeAnthropic(FakeProviderServer):
    anthropic_cache: set[tuple[str, ...]] = field(default_factory=set)  # prefixes marked with cache_control

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
        if isinstance(system, list):  # text blocks, maybe with cache_control
            texts.extend(str(block.get("text", "")) for block in system)
        elif system:
            texts.append(str(system))
        self.last_usage = (self.prompt_tokens(texts), len(pieces_of(self.reply.until(body.get("stop_sequences"))[0])))
        return self.last_usage

    def _input_usage(self, body: dict[str, Any], prompt: int) -> dict[str, int]:
        """Explicit caching: the system blocks up to the last one marked `cache_control` are written to the cache
        the first time (cache_creation_input_tokens) and read from it after (cache_read_input_tokens);
        `input_tokens` is the rest, as the Messages API reports them."""
        system = body.get("system")
        blocks = system if isinstance(system, list) else []
        marked = [i for i, block in enumerate(blocks) if block.get("cache_control")]
        if not marked:
            return {"input_tokens": prompt}
        prefix = [str(block.get("text", "")) for block in blocks[: marked[-1] + 1]]
        tokens = self.prompt_tokens(prefix)
        key = tuple(prefix)
        if key in self.anthropic_cache:
            return {
                "input_tokens": prompt - tokens,
                "cache_read_input_tokens": tokens,
                "cache_creation_input_tokens": 0,
            }
        self.anthropic_cache.add(key)
        return {"input_tokens": prompt - tokens, "cache_read_input_tokens": 0, "cache_creation_input_tokens": tokens}

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

    def rejects(self, body: dict[str, Any]) -> bool:
        return tool_wire.anthropic_rejects(body)

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
        calls = tool_wire.anthropic_blocks(self.reply, body, tool)
        if calls:  # the model calls the client's tools
            usage = {**self._input_usage(body, prompt), "output_tokens": completion}
            return self._message(model, calls, "tool_use", usage)
        if tool is not None:
            block = {"type": "tool_use", "id": "toolu_fake", "name": tool, "input": json.loads(self.reply.text)}
            usage = {**self._input_usage(body, prompt), "output_tokens": completion}
            return self._message(model, [block], "tool_use", usage)
        text, sequence = self.reply.until(body.get("stop_sequences"))
        content = [{"type": "text", "text": text}]
        usage = {**self._input_usage(body, prompt), "output_tokens": completion}
        return self._message(model, content, "stop_sequence" if sequence else "end_turn", usage, sequence)

    def stream_frames(self, body: dict[str, Any], model: str) -> list[str]:
        prompt, completion = self._usage(body)
        start = self._message(model, [], None, {**self._input_usage(body, prompt), "output_tokens": 1})
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
        calls = tool_wire.anthropic_blocks(self.reply, body, tool)
        if calls:  # each tool_use block opened with input {}, then its input as input_json_delta pieces
            del frames[1]
            for index, block in enumerate(calls):
                start = {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}}
                frames.append(sse(start, "content_block_start"))
                for piece in tool_wire.halves(json.dumps(block["input"])):
                    arguments = {"type": "input_json_delta", "partial_json": piece}
                    frames.append(
                        sse({"type": "content_block_delta", "index": index, "delta": arguments}, "content_block_delta")
                    )
                frames.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
            end = {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": completion},
            }
            return [*frames, sse(end, "message_delta"), sse({"type": "message_stop"}, "message_stop")]
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
