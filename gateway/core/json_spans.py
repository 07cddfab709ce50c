"""Where a JSON text's leaf values sit: the character span of every string, number, true, false and null that
is a value (object keys and punctuation are not). Pure functions over the text; a text that is not one JSON
value gives no spans.

A structured answer's confidence is read from the tokens that hold its values: keys, quotes, commas and
braces are what the schema makes the decoder write, not what the model chose.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

_NUMBER_CHARS = frozenset("+-0123456789.eE")
_WHITESPACE = " \t\n\r"


@dataclass(frozen=True, slots=True)
class Span:
    """One leaf value: its path from the root (keys and list indices) and its characters [start, end)."""

    path: tuple[str | int, ...]
    start: int
    end: int


class _NotJson(ValueError):
    pass


def value_spans(text: str) -> tuple[Span, ...]:
    """Every leaf value of `text`, in order; () when `text` is not one JSON value."""
    spans: list[Span] = []
    try:
        end = _value(text, _skip(text, 0), (), spans)
    except (_NotJson, IndexError):
        return ()
    return tuple(spans) if _skip(text, end) == len(text) else ()


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _WHITESPACE:
        at += 1
    return at


def _value(text: str, at: int, path: tuple[str | int, ...], spans: list[Span]) -> int:
    first = text[at]
    if first == "{":
        return _object(text, at + 1, path, spans)
    if first == "[":
        return _array(text, at + 1, path, spans)
    if first == '"':
        end = _string_end(text, at)
    elif text.startswith(("true", "null"), at):
        end = at + 4
    elif text.startswith("false", at):
        end = at + 5
    elif first in _NUMBER_CHARS:
        end = at
        while end < len(text) and text[end] in _NUMBER_CHARS:
            end += 1
    else:
        raise _NotJson(at)
    spans.append(Span(path, at, end))
    return end


def _object(text: str, at: int, path: tuple[str | int, ...], spans: list[Span]) -> int:
    at = _skip(text, at)
    if text[at] == "}":
        return at + 1
    while True:
        if text[at] != '"':
            raise _NotJson(at)
        key_end = _string_end(text, at)
        key = json.loads(text[at:key_end])
        at = _skip(text, key_end)
        if text[at] != ":":
            raise _NotJson(at)
        at = _skip(text, _value(text, _skip(text, at + 1), (*path, key), spans))
        if text[at] == "}":
            return at + 1
        if text[at] != ",":
            raise _NotJson(at)
        at = _skip(text, at + 1)


def _array(text: str, at: int, path: tuple[str | int, ...], spans: list[Span]) -> int:
    at = _skip(text, at)
    if text[at] == "]":
        return at + 1
    index = 0
    while True:
        at = _skip(text, _value(text, at, (*path, index), spans))
        if text[at] == "]":
            return at + 1
        if text[at] != ",":
            raise _NotJson(at)
        at = _skip(text, at + 1)
        index += 1


def _string_end(text: str, at: int) -> int:
    """The index after the closing quote of the string opening at `at`."""
    at += 1
    while text[at] != '"':
        at += 2 if text[at] == "\\" else 1
    return at + 1
