"""Tool calling as each provider's API speaks it, for the stand-ins: what a request offering tools must look
like (else the provider's 400), and the tool-call answer, plain and streamed, in each one's own format.

- OpenAI (also xAI, and Hugging Face's router/TGI): `tools: [{"type": "function", "function": {"name",
  "description", "parameters"}}]`; the answer's `message.tool_calls` with arguments as JSON text and
  `finish_reason: "tool_calls"`; streamed as `delta.tool_calls` (the first piece of each call its index, id,
  type and name with arguments "", then pieces of the arguments by index). A `role: "tool"` turn must answer
  an id of an earlier assistant turn's `tool_calls`.
- Anthropic: `tools: [{"name", "description", "input_schema"}]`; `tool_use` content blocks with the input as
  an object, `stop_reason: "tool_use"`; streamed as `content_block_start` (the tool_use block, input {}) and
  `input_json_delta` pieces. A `tool_result` block must answer the id of a `tool_use` block of the assistant
  turn just before it.
- Gemini: `tools: [{"functionDeclarations": [{"name", "description", "parametersJsonSchema"}]}]`; the
  answer's `functionCall` parts (args an object), finishReason STOP; each call whole in one chunk when
  streamed. A `functionResponse` part must name its function.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.base import Reply


def halves(text: str) -> list[str]:
    """A call's arguments as two streamed pieces."""
    middle = len(text) // 2
    return [text[:middle], text[middle:]]


# -- OpenAI ----------------------------------------------------------------------------------------------------


def openai_rejects(body: dict[str, Any]) -> bool:
    tools = body.get("tools")
    if tools is not None and not _openai_tools_ok(tools):
        return True
    choice = body.get("tool_choice")
    if choice is not None and choice not in ("auto", "none", "required"):
        names = {t["function"]["name"] for t in tools or ()}
        if not isinstance(choice, dict) or (choice.get("function") or {}).get("name") not in names:
            return True
    called: set[str] = set()
    for message in body.get("messages", []):
        for call in message.get("tool_calls") or ():
            if (
                call.get("type") != "function"
                or not call.get("id")
                or not isinstance(call["function"]["arguments"], str)
            ):
                return True
            called.add(call["id"])
        if message.get("role") == "tool" and message.get("tool_call_id") not in called:
            return True
    return False


def _openai_tools_ok(tools: Any) -> bool:
    if not isinstance(tools, list) or not tools:
        return False
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict) or not function.get("name"):
            return False
        if "parameters" in function and not isinstance(function["parameters"], dict):
            return False
    return True


def openai_calls(reply: Reply, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool calls to answer with: the reply's, when the request offers tools (and does not say none)."""
    if not reply.tool_calls or not body.get("tools") or body.get("tool_choice") == "none":
        return []
    return [
        {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
        for i, (name, arguments) in enumerate(reply.tool_calls)
    ]


def openai_deltas(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `delta`s that stream these calls."""
    deltas = []
    for index, call in enumerate(calls):
        first = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        deltas.append({"tool_calls": [first]})
        for piece in halves(call["function"]["arguments"]):
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    return deltas


# -- Anthropic -------------------------------------------------------------------------------------------------


def anthropic_rejects(body: dict[str, Any]) -> bool:
    for tool in body.get("tools") or ():
        if not tool.get("name") or not isinstance(tool.get("input_schema"), dict):
            return True
    choice = body.get("tool_choice")
    if choice is not None and choice.get("type") not in ("auto", "any", "none", "tool"):
        return True
    previous: dict[str, Any] = {}
    for message in body.get("messages", []):
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        for block in blocks:
            if block.get("type") == "tool_use" and not isinstance(block.get("input"), dict):
                return True
            if block.get("type") == "tool_result":
                asked = previous.get("content") if previous.get("role") == "assistant" else None
                ids = {b.get("id") for b in asked if b.get("type") == "tool_use"} if isinstance(asked, list) else set()
                if block.get("tool_use_id") not in ids:
                    return True
        previous = message
    return False


def anthropic_blocks(reply: Reply, body: dict[str, Any], forced: str | None) -> list[dict[str, Any]]:
    """tool_use blocks answering the client's tools; when a tool is forced, only the calls of that tool (none:
    the forced tool is the structured-output one, answered with the reply's text)."""
    choice = body.get("tool_choice") or {}
    if not reply.tool_calls or not body.get("tools") or choice.get("type") == "none":
        return []
    return [
        {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": json.loads(arguments)}
        for i, (name, arguments) in enumerate(reply.tool_calls)
        if forced is None or name == forced
    ]


# -- Gemini ----------------------------------------------------------------------------------------------------


def gemini_rejects(body: dict[str, Any]) -> bool:
    for tool in body.get("tools") or ():
        for declaration in tool.get("functionDeclarations") or ():
            if not declaration.get("name"):
                return True
    for content in body.get("contents", []):
        for part in content.get("parts", []):
            response = part.get("functionResponse")
            if response is not None and (not response.get("name") or not isinstance(response.get("response"), dict)):
                return True
            call = part.get("functionCall")
            if call is not None and (not call.get("name") or not isinstance(call.get("args", {}), dict)):
                return True
    return False


def gemini_parts(reply: Reply, body: dict[str, Any]) -> list[dict[str, Any]]:
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
    declared = [d for tool in body.get("tools") or () for d in tool.get("functionDeclarations") or ()]
    if not reply.tool_calls or not declared or mode == "NONE":
        return []
    return [
        {"functionCall": {"id": f"fc_{i}", "name": name, "args": json.loads(arguments)}}
        for i, (name, arguments) in enumerate(reply.tool_calls)
    ]
