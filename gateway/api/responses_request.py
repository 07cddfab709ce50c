"""OpenAI Responses request JSON (`POST /v1/responses`) -> the chat door's request. Pure functions.

A Responses request is translated into the chat-completions body it means (`input` and
`instructions` become `messages`, `max_output_tokens` becomes `max_completion_tokens`,
`text.format` becomes `response_format`) and validated by `openai_request.chat_request`,
so both doors share one validation and one answerer. Every field of OpenAI's
`ResponseCreateParams` has one decision here (docs/openai_api.md): supported, ignored (it
cannot change the answer), accepted only at its default value, or rejected. Anything else,
unknown fields included, is a 400 naming the field. The gateway's own fields (`task`,
`privacy`, ...) come as top-level JSON fields or `x-gateway-*` headers, as on the chat door.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.api import openai_request
from gateway.api.openai_request import BadParam, ChatCall

SUPPORTED = frozenset(
    {
        "input",
        "instructions",
        "model",
        "max_output_tokens",
        "temperature",
        "stream",
        "text",
        "metadata",
        "store",
        "include",
        "top_logprobs",
    }
)
EXTENSIONS = openai_request.EXTENSIONS
# Read and dropped: bookkeeping for OpenAI's own service that cannot change the answer
# (stream_options only holds include_obfuscation, and the gateway never pads its events).
IGNORED = frozenset(
    {
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "parallel_tool_calls",
        "stream_options",
    }
)
LOGPROBS_INCLUDE = "message.output_text.logprobs"
MAX_METADATA_PAIRS = 16


def _absent(value: Any) -> bool:
    return value is None


def _empty(value: Any) -> bool:
    return value is None or value in ([], {}, "")


def _one_of(*allowed: object) -> Callable[[Any], bool]:
    return lambda value: value is None or any(value == a and type(value) is type(a) for a in allowed)


def _number_is(target: float) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return value is None or (isinstance(value, int | float) and not isinstance(value, bool) and value == target)

    return check


_NOT_STORED = "the gateway stores no responses nor conversations; send the whole conversation in input"
_NO_TOOLS = "tools are not supported on /v1/responses"
# Accepted only at the value that means "no such feature"; anything else is a 400 with the hint.
DEFAULT_ONLY: Mapping[str, tuple[Callable[[Any], bool], str]] = {
    "store": (_one_of(False), "responses are not stored; send store: false or leave it out"),
    "previous_response_id": (_absent, _NOT_STORED),
    "conversation": (_absent, _NOT_STORED),
    "context_management": (_empty, "context management is not supported"),
    "background": (_one_of(False), "background responses are not supported"),
    "background_options": (_empty, "background responses are not supported"),
    "prompt": (_absent, "saved prompts are not supported; send the text in input"),
    "tools": (_empty, _NO_TOOLS),
    "tool_choice": (_one_of("none", "auto"), _NO_TOOLS),
    "max_tool_calls": (_absent, _NO_TOOLS),
    "reasoning": (_empty, "reasoning options are not supported"),
    "top_p": (_number_is(1), "nucleus sampling is not supported; use temperature"),
    "truncation": (_one_of("disabled"), 'only "disabled" is supported: an input over the context is refused'),
    "service_tier": (_one_of("auto", "default"), 'only "auto" or "default" is accepted'),
    "moderation": (_absent, "moderation is not supported"),
    "image": (_empty, "image inputs are not supported"),
    "access_programs": (_empty, "access programs are not supported"),
}
KNOWN = SUPPORTED | EXTENSIONS | IGNORED | DEFAULT_ONLY.keys()

_ROLES = frozenset({"user", "system", "developer", "assistant"})
_ITEM_FIELDS = frozenset({"role", "content", "type", "id", "status", "phase"})  # id, status, phase: read and dropped
_TEXT_PARTS = frozenset({"input_text", "output_text"})
_PART_FIELDS = frozenset({"type", "text", "annotations", "logprobs", "prompt_cache_breakpoint"})
_TEXT_FIELDS = frozenset({"format", "verbosity"})
_FORMAT_FIELDS = frozenset({"type", "name", "schema", "strict", "description"})  # description: read and dropped


@dataclass(frozen=True, slots=True)
class ResponsesCall:
    """A Responses request, validated: the chat call that answers it and what the response object echoes."""

    chat: ChatCall
    instructions: str | None
    max_output_tokens: int | None
    temperature: float | None
    metadata: Mapping[str, str]
    text_format: Mapping[str, Any]  # `text.format` as the response object shows it
    logprobs: bool  # include: ["message.output_text.logprobs"]


def responses_request(
    body: Any,
    headers: Mapping[str, str],
    *,
    request_id: str,
    default_max_tokens: int,
    now: float,
    client: str = "",
) -> ResponsesCall:
    """Validate and convert. `headers` are looked up by lower-case name; `now` is time.monotonic()."""
    openai_request.check_decided(body, KNOWN, DEFAULT_ONLY)
    instructions = _instructions(body.get("instructions"))
    max_output_tokens = _max_output_tokens(body.get("max_output_tokens"))
    text_format, response_format = _text(body.get("text"))
    logprobs = _logprobs(body.get("include"))
    chat_body = _chat_body(body, instructions, max_output_tokens, response_format, logprobs)
    chat = openai_request.chat_request(
        chat_body, headers, request_id=request_id, default_max_tokens=default_max_tokens, now=now, client=client
    )
    temperature = body.get("temperature")
    return ResponsesCall(
        chat=chat,
        instructions=instructions,
        max_output_tokens=max_output_tokens,
        temperature=None if temperature is None else float(temperature),
        metadata=_metadata(body.get("metadata")),
        text_format=text_format,
        logprobs=logprobs,
    )


def _chat_body(
    body: Mapping[str, Any],
    instructions: str | None,
    max_output_tokens: int | None,
    response_format: dict[str, Any] | None,
    logprobs: bool,
) -> dict[str, Any]:
    """The chat-completions body this request means; the fields both doors share keep their names."""
    top = body.get("top_logprobs")
    if top is not None and not _is_int(top):
        raise BadParam("top_logprobs", f"expected an integer, got {openai_request.json_kind(top)}")
    chat: dict[str, Any] = {
        name: body[name] for name in EXTENSIONS | {"model", "temperature", "stream"} if name in body
    }
    chat["messages"] = [{"role": "system", "content": instructions}] if instructions else []
    chat["messages"] += _input(body.get("input"))
    if max_output_tokens is not None:
        chat["max_completion_tokens"] = max_output_tokens
    if response_format is not None:
        chat["response_format"] = response_format
    if logprobs:
        chat["logprobs"] = True
        chat["top_logprobs"] = top or 0
    return chat


# -- fields ----------------------------------------------------------------------------------------


def _instructions(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadParam("instructions", f"expected a string, got {openai_request.json_kind(value)}")
    return value


def _input(value: Any) -> list[dict[str, str]]:
    """`input`: a string (one user message) or a list of message items with text content."""
    if isinstance(value, str):
        if not value.strip():
            raise BadParam("input", "must not be empty")
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise BadParam("input", "a string or a non-empty list of {role, content} messages is required")
    return [_item(item, f"input[{i}]") for i, item in enumerate(value)]


def _item(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadParam(where, f"expected a message object with role and content, got {openai_request.json_kind(value)}")
    kind = value.get("type", "message")
    if kind != "message":
        raise BadParam(f"{where}.type", f"{kind!r} items are not supported; send messages with text content")
    for name in value:
        if name not in _ITEM_FIELDS:
            raise BadParam(f"{where}.{name}", "unknown message field; send role and content")
    role = value.get("role")
    if role not in _ROLES:
        raise BadParam(f"{where}.role", f"{role!r} is not one of {', '.join(sorted(_ROLES))}")
    return {"role": role, "content": _content(value.get("content"), f"{where}.content")}


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        text = "\n".join(_part(part, f"{where}[{i}]") for i, part in enumerate(value))
    else:
        raise BadParam(where, f"expected a string or a list of input_text parts, got {openai_request.json_kind(value)}")
    if not text.strip():
        raise BadParam(where, "must not be empty")
    return text


def _part(value: Any, where: str) -> str:
    if not isinstance(value, dict):
        raise BadParam(where, f"expected a content part object, got {openai_request.json_kind(value)}")
    kind = value.get("type")
    if kind not in _TEXT_PARTS:
        raise BadParam(f"{where}.type", f"{kind!r} content is not supported; send input_text parts only")
    for name in value:
        if name not in _PART_FIELDS:
            raise BadParam(f"{where}.{name}", "unknown content part field; send type and text")
    text = value.get("text")
    if not isinstance(text, str):
        raise BadParam(f"{where}.text", f"expected a string, got {openai_request.json_kind(text)}")
    return text


def _max_output_tokens(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise BadParam("max_output_tokens", f"{value!r} is not a positive integer")
    return int(value)


def _text(value: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`text`: its `format` as the response echoes it, and the chat door's `response_format` it means."""
    if value is None:
        return {"type": "text"}, None
    if not isinstance(value, dict):
        raise BadParam("text", f"expected an object with `format`, got {openai_request.json_kind(value)}")
    for name in value:
        if name not in _TEXT_FIELDS:
            raise BadParam(f"text.{name}", "unknown field; send format")
    if value.get("verbosity") not in (None, "medium"):
        raise BadParam("text.verbosity", 'not supported: only "medium" (the default) is accepted')
    return _format(value.get("format"))


def _format(given: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`text.format`: text, json_object, or json_schema with name, schema and strict (checked as the chat door's)."""
    if given is None:
        return {"type": "text"}, None
    if not isinstance(given, dict):
        raise BadParam("text.format", f"expected an object with a `type`, got {openai_request.json_kind(given)}")
    for name in given:
        if name not in _FORMAT_FIELDS:
            raise BadParam(f"text.format.{name}", "unknown field; send type, name, schema and strict")
    kind = given.get("type")
    if kind == "text":
        return {"type": "text"}, None
    if kind == "json_object":
        return {"type": "json_object"}, {"type": "json_object"}
    if kind != "json_schema":
        raise BadParam("text.format.type", f"{kind!r} is not supported; use text, json_object or json_schema")
    spec = {name: given[name] for name in ("name", "schema", "strict") if name in given}
    chat_format = {"type": "json_schema", "json_schema": spec}
    try:
        openai_request.response_format(chat_format)  # the chat door's checks, named for this door
    except BadParam as exc:
        problem = exc.message.removeprefix("response_format: ").replace("json_schema.", "")
        raise BadParam("text.format", problem) from None
    echoed = {"type": "json_schema", "name": spec.get("name", "response"), "schema": spec.get("schema", {})}
    echoed["strict"] = bool(spec.get("strict"))
    if isinstance(given.get("description"), str):
        echoed["description"] = given["description"]
    return echoed, chat_format


def _logprobs(value: Any) -> bool:
    """`include`: only "message.output_text.logprobs" (token logprobs on the answer's text) is served."""
    if value is None:
        return False
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadParam("include", f"expected a list of strings, got {openai_request.json_kind(value)}")
    for item in value:
        if item != LOGPROBS_INCLUDE:
            raise BadParam("include", f"{item!r} is not supported; only {LOGPROBS_INCLUDE!r} is")
    return bool(value)


def _metadata(value: Any) -> dict[str, str]:
    """`metadata`: up to 16 string pairs, echoed on the response and not used otherwise."""
    if value is None:
        return {}
    if (
        not isinstance(value, dict)
        or len(value) > MAX_METADATA_PAIRS
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        raise BadParam("metadata", f"expected an object of up to {MAX_METADATA_PAIRS} string values")
    return dict(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
