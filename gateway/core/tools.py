"""Tools (function calling): a request's tools and tool turns checked once, and tool calls folded from
streamed pieces. Pure functions.

Only a tier that supports tools takes a request that uses them (`Request.uses_tools`): the remote tier
(every provider maps tools to its own API), or a local backend whose class says `supports_tools = True`
(none does today). Where the request may go is decided in gateway/routing/policy.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.core import structured
from gateway.core.contracts import Message, ResponseFormat, Role, Tool, ToolCall, ToolCallDelta, ToolChoice
from gateway.core.errors import InvalidArgument

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what every provider accepts as a function name (OpenAI's rule)
MAX_TOOLS = 128  # OpenAI's limit
CHOICE_MODES = ("auto", "none", "required", "function")
FINISH = "tool_calls"  # the finish reason of an answer that calls tools, on every tier and door


def supports(backend: object) -> bool:
    """Whether a local backend takes tools and tool turns (`supports_tools = True` on its class)."""
    return bool(getattr(backend, "supports_tools", False))


def check(
    tools: Sequence[Tool], choice: ToolChoice | None, messages: Sequence[Message], *, param: str = "tools"
) -> None:
    """InvalidArgument naming the field when the tools, the tool choice or the conversation's tool turns do
    not make sense: a bad or repeated name, a parameters schema that is not a JSON schema, a choice that names
    no offered tool, a tool result that answers no earlier call."""
    names = _check_tools(tools, param)
    _check_choice(choice, names)
    _check_turns(messages)


def _check_tools(tools: Sequence[Tool], param: str) -> set[str]:
    if len(tools) > MAX_TOOLS:
        raise InvalidArgument(f"{param}: {len(tools)} tools; send at most {MAX_TOOLS}")
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if not NAME.match(tool.name):
            raise InvalidArgument(
                f"{param}[{i}].name: {tool.name!r} is not a function name; use 1-64 of a-z A-Z 0-9 _ -"
            )
        if tool.name in seen:
            raise InvalidArgument(f"{param}[{i}].name: {tool.name!r} is offered twice; send each tool once")
        seen.add(tool.name)
        if tool.parameters:
            structured.check(ResponseFormat(tool.parameters), f"{param}[{i}].parameters")
    return seen


def _check_choice(choice: ToolChoice | None, names: set[str]) -> None:
    if choice is None:
        return
    if choice.mode not in CHOICE_MODES:
        raise InvalidArgument(f"tool_choice: {choice.mode!r} is not one of {', '.join(CHOICE_MODES)}")
    if choice.mode in ("required", "function") and not names:
        raise InvalidArgument(f"tool_choice: {choice.mode!r} needs tools; send tools or drop tool_choice")
    if choice.mode == "function" and choice.name not in names:
        offered = ", ".join(sorted(names)) or "none"
        raise InvalidArgument(f"tool_choice: {choice.name!r} is not one of the tools offered ({offered})")


def _check_turns(messages: Sequence[Message]) -> None:
    called: set[str] = set()
    for i, message in enumerate(messages):
        for call in message.tool_calls:
            if not call.id:
                raise InvalidArgument(f"messages[{i}].tool_calls: every tool call needs its id")
            called.add(call.id)
        if message.role is Role.TOOL and message.tool_call_id not in called:
            raise InvalidArgument(
                f"messages[{i}].tool_call_id: {message.tool_call_id!r} answers no tool call of an earlier "
                "assistant message; send the assistant turn with its tool_calls before the tool results"
            )


def name_of(messages: Iterable[Message], call_id: str) -> str:
    """The tool an earlier assistant turn called with `call_id` ("" when none did)."""
    for message in messages:
        for call in message.tool_calls:
            if call.id == call_id:
                return call.name
    return ""


def arguments_object(arguments: str) -> dict[str, object]:
    """A tool call's arguments as an object, for APIs that take them parsed (Anthropic, Gemini); text that is
    not a JSON object is kept whole under "arguments"."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def deltas(calls: Sequence[ToolCall]) -> tuple[ToolCallDelta, ...]:
    """Whole tool calls as stream pieces: one per call, with its id, name and all of its arguments."""
    return tuple(ToolCallDelta(i, call.id, call.name, call.arguments) for i, call in enumerate(calls))


@dataclass
class CallAccumulator:
    """Folds streamed ToolCallDelta pieces into the ToolCalls they spell (by `index`, in index order)."""

    _ids: dict[int, str] = field(default_factory=dict)
    _names: dict[int, str] = field(default_factory=dict)
    _arguments: dict[int, list[str]] = field(default_factory=dict)

    def add(self, piece: ToolCallDelta) -> None:
        if piece.id:
            self._ids[piece.index] = piece.id
        if piece.name:
            self._names[piece.index] = self._names.get(piece.index, "") + piece.name
        self._arguments.setdefault(piece.index, []).append(piece.arguments)

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(self._ids.get(i, f"call_{i}"), self._names.get(i, ""), "".join(self._arguments[i]))
            for i in sorted(self._arguments)
        )
