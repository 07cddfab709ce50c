"""OpenAI chat-completions request JSON (and the gateway's request headers) -> domain Request. Pure functions.

Every field of OpenAI's `CompletionCreateParams` has one decision here (docs/openai_api.md):
supported, ignored (it cannot change the answer), accepted only at its default value, or
rejected. Anything else, unknown fields included, is a 400 naming the field, never a
silent drop. The gateway's own fields (`task`, `privacy`, ...) come as top-level JSON
fields (what the SDKs' `extra_body` sends) or as `x-gateway-*` headers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.api import trace_context
from gateway.core import structured
from gateway.core.contracts import (
    Message,
    Priority,
    Privacy,
    Request,
    ResponseFormat,
    Role,
    Tool,
    ToolCall,
    ToolChoice,
)
from gateway.core.errors import InvalidArgument

T = TypeVar("T")
MAX_TEMPERATURE = 2.0
HEADER_PREFIX = "x-gateway-"
TIMEOUT_HEADER = "x-gateway-timeout-ms"
REQUEST_ID_HEADER = "x-gateway-request-id"
# What the official SDKs send by themselves: the Python SDK its read timeout in seconds (float),
# the Node SDK its request timeout in whole seconds. Both bound the wait for the response
# headers only, so they set the deadline of non-streamed requests (docs/openai_api.md).
SDK_TIMEOUT_HEADERS = ("x-stainless-read-timeout", "x-stainless-timeout")

SUPPORTED = frozenset(
    {
        "messages",
        "model",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "stream",
        "stream_options",
        "response_format",
        "stop",
        "logprobs",
        "top_logprobs",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
    }
)
EXTENSIONS = frozenset({"task", "privacy", "min_confidence", "priority", "bypass_cache", "tags", "semantic_cache"})
# Read and dropped: bookkeeping for OpenAI's own service that cannot change the answer.
IGNORED = frozenset(
    {
        "user",
        "safety_identifier",
        "metadata",
        "store",
        "seed",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
    }
)


def _absent(value: Any) -> bool:
    return value is None


def _empty(value: Any) -> bool:
    return value is None or value in ([], {}, "")


def _number_is(target: float) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return value is None or (isinstance(value, int | float) and not isinstance(value, bool) and value == target)

    return check


def _one_of(*allowed: object) -> Callable[[Any], bool]:
    return lambda value: value is None or any(value == a and type(value) is type(a) for a in allowed)


# Accepted only at the value that means "no such feature"; anything else is a 400 with the hint.
DEFAULT_ONLY: Mapping[str, tuple[Callable[[Any], bool], str]] = {
    "n": (_number_is(1), "only n = 1 is supported; send one request per answer"),
    "functions": (_empty, "the legacy `functions` are not supported; send them as `tools`"),
    "function_call": (_one_of("none"), "the legacy `function_call` is not supported; use `tool_choice` with `tools`"),
    "logit_bias": (_empty, "logit bias is not supported"),
    "frequency_penalty": (_number_is(0), "penalties are not supported; leave it at 0"),
    "presence_penalty": (_number_is(0), "penalties are not supported; leave it at 0"),
    "top_p": (_number_is(1), "nucleus sampling is not supported; use temperature"),
    "modalities": (lambda v: v is None or v == ["text"], 'only ["text"] is supported'),
    "audio": (_absent, "audio output is not supported"),
    "prediction": (_absent, "predicted outputs are not supported"),
    "reasoning_effort": (_absent, "reasoning effort is not supported"),
    "verbosity": (_absent, "verbosity is not supported"),
    "web_search_options": (_absent, "web search is not supported"),
    "moderation": (_absent, "moderation is not supported"),
    "service_tier": (_one_of("auto", "default"), 'only "auto" or "default" is accepted'),
}
KNOWN = SUPPORTED | EXTENSIONS | IGNORED | DEFAULT_ONLY.keys()

_ROLES = {
    "system": Role.SYSTEM,
    "developer": Role.SYSTEM,
    "user": Role.USER,
    "assistant": Role.ASSISTANT,
    "tool": Role.TOOL,
}
_MESSAGE_FIELDS = frozenset({"role", "content", "name"})  # `name` is read and dropped (but a tool's: kept)
# An assistant turn may carry these only when empty (SDKs echo a previous answer back whole).
_ASSISTANT_EMPTY = frozenset({"refusal", "function_call", "audio", "annotations"})
_CHOICES = ("none", "auto", "required")
_PRIVACY = {"default": Privacy.DEFAULT, "local_only": Privacy.LOCAL_ONLY}
_PRIORITY = {"normal": Priority.NORMAL, "urgent": Priority.URGENT, "bulk": Priority.BULK}
_KINDS = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class BadParam(InvalidArgument):
    """Bad input at the OpenAI door: `param` names the field (OpenAI's `error.param`)."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param}: {problem}")
        self.param = param


@dataclass(frozen=True, slots=True)
class ChatCall:
    """A chat-completions request, validated: the domain request and how to answer it."""

    request: Request
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with the token counts


def request_id(headers: Mapping[str, str], generate: Callable[[], str]) -> str:
    """The client's `x-gateway-request-id` (letters, digits and ._:- up to 128), else a new one."""
    given = headers.get(REQUEST_ID_HEADER)
    if given is None:
        return generate()
    if not _REQUEST_ID.match(given):
        raise BadParam(REQUEST_ID_HEADER, "use up to 128 letters, digits, '.', '_', ':' or '-'")
    return given


def chat_request(
    body: Any,
    headers: Mapping[str, str],
    *,
    request_id: str,
    default_max_tokens: int,
    now: float,
    client: str = "",
) -> ChatCall:
    """Validate and convert. `headers` are looked up by lower-case name; `now` is time.monotonic()."""
    check_decided(body, KNOWN, DEFAULT_ONLY)
    stream = _optional_bool(body, "stream") or False
    include_usage = _stream_options(body.get("stream_options"), stream)
    privacy = _choice(body, headers, "privacy", _PRIVACY)
    priority = _choice(body, headers, "priority", _PRIORITY)
    timeout_s = _timeout_s(headers, stream)
    return ChatCall(
        trace_context.from_headers(
            Request(
                request_id=request_id,
                messages=_messages(body.get("messages")),
                max_tokens=_max_tokens(body) or default_max_tokens,
                temperature=_temperature(body.get("temperature")),
                task=_text(body, headers, "task"),
                model=_model(body.get("model")),
                priority=priority or Priority.NORMAL,
                privacy=privacy or Privacy.DEFAULT,
                min_confidence=_min_confidence(body, headers),
                bypass_cache=_optional_bool(body, "bypass_cache") or False,
                semantic_cache=_semantic_cache(body, headers),
                tags=_tags(body.get("tags")),
                deadline=None if timeout_s is None else now + timeout_s,
                client=client,
                stop=_stop(body.get("stop")),
                top_logprobs=_top_logprobs(body),
                response_format=response_format(body.get("response_format")),
                tools=_tools(body.get("tools")),
                tool_choice=_tool_choice(body.get("tool_choice")),
                parallel_tool_calls=_optional_bool(body, "parallel_tool_calls"),
            ),
            headers.get,
        ),
        stream=stream,
        include_usage=include_usage,
    )


# -- OpenAI fields ---------------------------------------------------------------------------------


def _messages(value: Any) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise BadParam("messages", "a non-empty list of {role, content} messages is required")
    return tuple(_message(m, f"messages[{i}]") for i, m in enumerate(value))


def _message(value: Any, where: str) -> Message:
    if not isinstance(value, dict):
        raise BadParam(where, f"expected an object with role and content, got {json_kind(value)}")
    raw_role = value.get("role")
    role = _ROLES.get(raw_role) if isinstance(raw_role, str) else None
    if role is None:
        hint = " (a function result is sent as role 'tool' with its tool_call_id)" if raw_role == "function" else ""
        raise BadParam(f"{where}.role", f"{raw_role!r} is not one of {', '.join(_ROLES)}{hint}")
    _check_message_fields(value, role, where)
    if role is Role.TOOL:
        call_id = value.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise BadParam(f"{where}.tool_call_id", "a tool message names the tool call it answers")
        name = value.get("name")
        return Message(role, _content(value.get("content"), f"{where}.content", empty=True), (), call_id, _str(name))
    calls = _tool_calls(value.get("tool_calls"), f"{where}.tool_calls") if role is Role.ASSISTANT else ()
    content = value.get("content")
    if calls and content is None:
        return Message(role, "", calls)
    return Message(role, _content(content, f"{where}.content", empty=bool(calls)), calls)


def _check_message_fields(value: dict[str, Any], role: Role, where: str) -> None:
    for name, field_value in value.items():
        if name in _MESSAGE_FIELDS or (role, name) in ((Role.ASSISTANT, "tool_calls"), (Role.TOOL, "tool_call_id")):
            continue
        if role is Role.ASSISTANT and name in _ASSISTANT_EMPTY:
            if _empty(field_value):
                continue
            raise BadParam(f"{where}.{name}", "not supported: the gateway answers with text and tool calls only")
        raise BadParam(f"{where}.{name}", "unknown message field; send role and content")


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _tool_calls(value: Any, where: str) -> tuple[ToolCall, ...]:
    """An assistant turn's `tool_calls`: [{"id", "type": "function", "function": {"name", "arguments"}}]."""
    if _empty(value):
        return ()
    if not isinstance(value, list):
        raise BadParam(where, f"expected a list of tool calls, got {json_kind(value)}")
    calls = []
    for i, call in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(call, dict) or call.get("type", "function") != "function":
            raise BadParam(at, 'expected {"id", "type": "function", "function": {"name", "arguments"}}')
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadParam(f"{at}.function", "expected an object with name and arguments")
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):
            raise BadParam(f"{at}.function.arguments", f"expected JSON text (a string), got {json_kind(arguments)}")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise BadParam(f"{at}.id", "every tool call needs its id (the tool message answering it names it)")
        calls.append(ToolCall(call_id, function["name"], arguments))
    return tuple(calls)


def _tools(value: Any) -> tuple[Tool, ...]:
    """`tools`: [{"type": "function", "function": {"name", "description", "parameters", "strict"}}]; names and
    schemas are checked in routing (gateway/core/tools.py)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadParam("tools", f"expected a list of tools, got {json_kind(value)}")
    tools = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise BadParam("tools", f"tools[{i}]: type {kind!r} is not supported; send function tools")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadParam("tools", f"tools[{i}].function: expected an object with a name")
        description = function.get("description") or ""
        parameters = function.get("parameters")
        strict = function.get("strict") or False
        if not isinstance(description, str):
            raise BadParam("tools", f"tools[{i}].function.description: expected a string")
        if parameters is not None and not isinstance(parameters, dict):
            raise BadParam("tools", f"tools[{i}].function.parameters: expected a JSON schema object")
        if not isinstance(strict, bool):
            raise BadParam("tools", f"tools[{i}].function.strict: expected a boolean")
        schema = structured.canonical(parameters) if parameters is not None else ""
        tools.append(Tool(function["name"], description, schema, strict))
    return tuple(tools)


def _tool_choice(value: Any) -> ToolChoice | None:
    """`tool_choice`: "none", "auto", "required", or {"type": "function", "function": {"name"}}."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in _CHOICES:
            raise BadParam("tool_choice", f"{value!r} is not one of {', '.join(_CHOICES)} or a function")
        return ToolChoice(value)
    function = value.get("function") if isinstance(value, dict) and value.get("type") == "function" else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise BadParam(
            "tool_choice", 'expected "none", "auto", "required" or {"type": "function", "function": {"name"}}'
        )
    return ToolChoice("function", function["name"])


def _content(value: Any, where: str, *, empty: bool = False) -> str:
    if value is None and empty:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        text = "\n".join(_text_part(part, f"{where}[{i}]") for i, part in enumerate(value))
    else:
        raise BadParam(where, f"expected a string or a list of text parts, got {json_kind(value)}")
    if not text.strip() and not empty:
        raise BadParam(where, "must not be empty")
    return text


def _text_part(part: Any, where: str) -> str:
    if not isinstance(part, dict):
        raise BadParam(where, f"expected a content part object, got {json_kind(part)}")
    kind = part.get("type")
    if kind != "text":
        raise BadParam(f"{where}.type", f"{kind!r} content is not supported; send text parts only")
    text = part.get("text")
    if not isinstance(text, str):
        raise BadParam(f"{where}.text", f"expected a string, got {json_kind(text)}")
    return text


def _model(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadParam("model", f"expected a string, got {json_kind(value)}")
    return value


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    given = {name: body[name] for name in ("max_completion_tokens", "max_tokens") if body.get(name) is not None}
    for name, value in given.items():
        if not _is_int(value) or value < 1:
            raise BadParam(name, f"{value!r} is not a positive integer")
    if len(set(given.values())) > 1:
        raise BadParam("max_tokens", "max_tokens and max_completion_tokens differ; send one of them")
    return next(iter(given.values()), None)


def _temperature(value: Any) -> float:
    if value is None:
        return 0.0
    if not _is_number(value) or not 0.0 <= value <= MAX_TEMPERATURE:
        raise BadParam("temperature", f"{value!r} is out of range; use 0 to {MAX_TEMPERATURE:g}")
    return float(value)


def _top_logprobs(body: Mapping[str, Any]) -> int | None:
    """With `logprobs: true`, how many alternatives per token to report (`top_logprobs`, default 0; its range
    is checked in routing); None when token logprobs are not asked for."""
    wanted = _optional_bool(body, "logprobs")
    top = body.get("top_logprobs")
    if top is not None and not _is_int(top):
        raise BadParam("top_logprobs", f"expected an integer, got {json_kind(top)}")
    if not wanted:
        if top:
            raise BadParam("top_logprobs", "needs logprobs: true")
        return None
    return top or 0


def response_format(value: Any) -> ResponseFormat | None:
    """`response_format`: {"type": "text"} (free text), {"type": "json_object"}, or {"type": "json_schema",
    "json_schema": {"name", "schema", "strict"}}; whether the schema is a valid JSON schema is checked in routing."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadParam("response_format", f"expected an object with a `type`, got {json_kind(value)}")
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat()
    if kind != "json_schema":
        raise BadParam("response_format", f"type {kind!r} is not supported; use text, json_object or json_schema")
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise BadParam("response_format", "json_schema: expected an object with `name` and `schema`")
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise BadParam("response_format", f"json_schema.schema: expected a JSON schema object, got {json_kind(schema)}")
    name = spec.get("name", "response")
    if not isinstance(name, str) or not name:
        raise BadParam("response_format", "json_schema.name: expected a non-empty string")
    strict = spec.get("strict") or False
    if not isinstance(strict, bool):
        raise BadParam("response_format", f"json_schema.strict: expected a boolean, got {json_kind(strict)}")
    return ResponseFormat(structured.canonical(schema or {"type": "object"}), name, strict)


def _stop(value: Any) -> tuple[str, ...]:
    """`stop`: a string or a list of strings (their number and emptiness are checked in routing)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadParam("stop", f"expected a string or a list of strings, got {json_kind(value)}")
    return tuple(value)


def _stream_options(value: Any, stream: bool) -> bool:
    if value is None:
        return False
    if not stream:
        raise BadParam("stream_options", "only allowed with stream: true")
    if not isinstance(value, dict):
        raise BadParam("stream_options", f"expected an object, got {json_kind(value)}")
    for name in value:
        if name != "include_usage":
            raise BadParam(f"stream_options.{name}", "not supported; only include_usage is")
    include = value.get("include_usage")
    if include is not None and not isinstance(include, bool):
        raise BadParam("stream_options.include_usage", f"expected true or false, got {json_kind(include)}")
    return bool(include)


# -- gateway extensions: a top-level JSON field or an x-gateway-* header -----------------------------


def _pick(body: Mapping[str, Any], headers: Mapping[str, str], name: str) -> tuple[Any, str] | None:
    """(value, where it came from) for an extension sent in the body or as a header; both must agree."""
    header = HEADER_PREFIX + name.replace("_", "-")
    in_body = body.get(name)
    in_header = headers.get(header)
    if in_body is not None and in_header is not None and str(in_body) != in_header:
        raise BadParam(name, f"the body says {in_body!r} and the {header} header says {in_header!r}; send one")
    if in_body is not None:
        return in_body, name
    if in_header is not None:
        return in_header, header
    return None


def _text(body: Mapping[str, Any], headers: Mapping[str, str], name: str) -> str:
    picked = _pick(body, headers, name)
    if picked is None:
        return ""
    value, where = picked
    if not isinstance(value, str):
        raise BadParam(where, f"expected a string, got {json_kind(value)}")
    return value


def _choice(body: Mapping[str, Any], headers: Mapping[str, str], name: str, values: Mapping[str, T]) -> T | None:
    picked = _pick(body, headers, name)
    if picked is None:
        return None
    value, where = picked
    if not isinstance(value, str) or value not in values:
        raise BadParam(where, f"{value!r} is not one of {', '.join(repr(v) for v in values)}")
    return values[value]


def _min_confidence(body: Mapping[str, Any], headers: Mapping[str, str]) -> float | None:
    picked = _pick(body, headers, "min_confidence")
    if picked is None:
        return None
    value, where = picked
    from_header = where.startswith(HEADER_PREFIX)
    number = _float(value) if from_header else value if _is_number(value) else None
    if number is None or not 0.0 <= number <= 1.0:
        raise BadParam(where, f"{value!r} is out of range; use a number from 0 to 1")
    return float(number)


_SWITCH = {"true": True, "on": True, "1": True, "false": False, "off": False, "0": False}


def _semantic_cache(body: Mapping[str, Any], headers: Mapping[str, str]) -> bool | None:
    """The request's own say on the semantic cache: the body's `semantic_cache` (true/false) or the
    x-gateway-semantic-cache header (on/off, true/false, 1/0); None = its task's setting."""
    picked = _pick(body, headers, "semantic_cache")
    if picked is None:
        return None
    value, where = picked
    if isinstance(value, bool):
        return value
    if where.startswith(HEADER_PREFIX) and isinstance(value, str) and value.strip().lower() in _SWITCH:
        return _SWITCH[value.strip().lower()]
    raise BadParam(where, f"{value!r} is neither on nor off; send true or false (header: on or off)")


def _optional_bool(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise BadParam(name, f"expected true or false, got {json_kind(value)}")
    return value


def _tags(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadParam("tags", 'expected an object of string values, e.g. {"desk": "rates"}')
    return dict(value)


def _timeout_s(headers: Mapping[str, str], stream: bool) -> float | None:
    """The client's deadline in seconds from now: x-gateway-timeout-ms, and for non-streamed requests
    the SDKs' own timeout headers; the shortest wins. None: no deadline."""
    found: list[float] = []
    given = headers.get(TIMEOUT_HEADER)
    if given is not None:
        ms = _float(given)
        if ms is None or ms <= 0:
            raise BadParam(TIMEOUT_HEADER, f"{given!r} is not a positive number of milliseconds")
        found.append(ms / 1000)
    if not stream:
        for name in SDK_TIMEOUT_HEADERS:
            seconds = _float(headers.get(name, ""))
            if seconds is not None and seconds > 0:  # the Node SDK truncates a sub-second timeout to "0"
                found.append(seconds)
    return min(found, default=None)


# -- helpers ---------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _float(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def check_decided(
    body: Any, known: Iterable[str], default_only: Mapping[str, tuple[Callable[[Any], bool], str]]
) -> None:
    """`body` is a JSON object whose every field has a decision (`known`), and the fields supported only at
    their default hold it; else BadParam naming the field (both doors, chat completions and responses)."""
    if not isinstance(body, dict):
        raise BadParam("body", f"expected a JSON object, got {json_kind(body)}")
    decided = frozenset(known)
    for name in body:
        if name not in decided:
            raise BadParam(name, "unknown parameter; the gateway does not support it (docs/openai_api.md)")
    for name, (harmless, hint) in default_only.items():
        if name in body and not harmless(body[name]):
            raise BadParam(name, f"not supported: {hint}")


def json_kind(value: Any) -> str:
    """What a JSON value is, for messages: "a string", "a list", "null"..."""
    if value is None:
        return "null"
    return _KINDS.get(type(value), type(value).__name__)
