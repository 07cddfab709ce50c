"""Structured (JSON) answers: the request's schema checked once, answers validated against it, and their
confidence (the values' tokens, an enum field's choice renormalised over the allowed values). Pure functions;
each schema is compiled once (cached by its text).

A local backend that can constrain its decoding to a schema says so with a class attribute
`constrains_json = True` (vLLM, llama.cpp, Ollama); one without it (transformers, echo) cannot, and a
structured request skips it for the remote tier.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.core.confidence import quantile_confidence
from gateway.core.contracts import ResponseFormat, TokenLogprob
from gateway.core.errors import InvalidArgument
from gateway.core.json_spans import value_spans

ANY_OBJECT: Mapping[str, Any] = {"type": "object"}  # json_object: any JSON object


def canonical(schema: Mapping[str, Any]) -> str:
    """The schema as the text ResponseFormat keeps: compact, keys in the client's order (constrained decoders
    and providers generate properties in the order the schema lists them, so the order is part of the ask)."""
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


def schema_of(fmt: ResponseFormat) -> dict[str, Any]:
    """The JSON schema an answer must satisfy (a fresh dict the caller may keep)."""
    return json.loads(fmt.schema) if fmt.schema else dict(ANY_OBJECT)


def can_constrain(backend: object) -> bool:
    return bool(getattr(backend, "constrains_json", False))


def check(fmt: ResponseFormat | None, param: str = "response_format") -> None:
    """InvalidArgument naming `param` when the schema is not a valid JSON schema."""
    if fmt is None or not fmt.schema:
        return
    try:
        _validator(fmt.schema)
    except ValueError as exc:
        raise InvalidArgument(f"{param}: {exc}") from None


def problem(text: str, fmt: ResponseFormat) -> str | None:
    """Why `text` is not an answer to `fmt` (not JSON, not an object, or against the schema); None when it is."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"the answer is not JSON ({exc.msg} at character {exc.pos})"
    if not fmt.schema:
        return None if isinstance(value, dict) else "the answer is not a JSON object"
    error = _best_error(fmt.schema, value)
    return None if error is None else f"the answer does not validate against the schema: {error}"


def answer_confidence(text: str, tokens: Sequence[TokenLogprob], fmt: ResponseFormat, quantile: float) -> float | None:
    """A structured answer's confidence: the lower of its enum fields' choices (`enum_confidence`) and the
    token quantile of its other values. Only tokens that hold a value's characters count: keys, quotes,
    commas and braces are what the schema makes the decoder write, and a backend reports their
    probabilities before the constraint, so they would say how surprised the unconstrained model is by
    the format, not how sure it is of the answer. An enum value's tokens count through its renormalised
    choice instead. When the tokens do not spell one JSON value, every token counts, as for free text."""
    enum = enum_confidence(text, tokens, fmt)
    spoken = "".join(token.token for token in tokens)
    spans = value_spans(spoken)
    if not spans:
        free = quantile_confidence(tokens, quantile)
    else:
        chosen = _enum_keys(fmt) if enum is not None else frozenset()
        held = [  # a string's characters without its quotes
            (span.start + 1, span.end - 1) if spoken[span.start] == '"' else (span.start, span.end)
            for span in spans
            if not (len(span.path) == 1 and span.path[0] in chosen)
        ]
        starts = _token_starts(tokens)
        kept = [
            token
            for token, start in zip(tokens, starts, strict=True)
            if any(start < end and start + len(token.token) > begin for begin, end in held)
        ]
        free = quantile_confidence(kept, quantile)
    if enum is None:
        return free
    return enum if free is None else min(enum, free)


def _enum_keys(fmt: ResponseFormat) -> frozenset[str]:
    """The top-level properties whose values are chosen from a string enum (`enum_confidence` scores them)."""
    properties = json.loads(fmt.schema).get("properties") if fmt.schema else None
    if not isinstance(properties, dict):
        return frozenset()
    return frozenset(
        key for key, spec in properties.items() if isinstance(spec, dict) and isinstance(spec.get("enum"), list)
    )


def enum_confidence(text: str, tokens: Sequence[TokenLogprob], fmt: ResponseFormat) -> float | None:
    """The least probability among the answer's string enum fields (top-level properties), each the
    probability of the chosen value's first token renormalised over the allowed values' first tokens, read
    from that token's reported alternatives (an allowed value not among them counts as likely as the least
    likely one reported); None when no enum field's alternatives were reported."""
    if not fmt.schema or not tokens:
        return None
    properties = json.loads(fmt.schema).get("properties")
    if not isinstance(properties, dict):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    starts = _token_starts(tokens)
    spoken = "".join(token.token for token in tokens)  # the tokens' own text (a backend's may differ from `text`)
    found: list[float] = []
    for key, spec in properties.items():
        allowed = spec.get("enum") if isinstance(spec, dict) else None
        chosen = value.get(key)
        if not isinstance(chosen, str) or not isinstance(allowed, list) or len(allowed) < 2:
            continue
        options = [a for a in allowed if isinstance(a, str)]
        probability = _enum_probability(spoken, key, chosen, options, tokens, starts)
        if probability is not None:
            found.append(probability)
    return min(found, default=None)


def _token_starts(tokens: Sequence[TokenLogprob]) -> list[int]:
    starts, at = [], 0
    for token in tokens:
        starts.append(at)
        at += len(token.token)
    return starts


def _enum_probability(
    text: str, key: str, chosen: str, allowed: list[str], tokens: Sequence[TokenLogprob], starts: list[int]
) -> float | None:
    """The chosen value's renormalised probability at the token where the value begins."""
    key_at = text.find(json.dumps(key))
    if key_at < 0:
        return None
    value_at = text.find(json.dumps(chosen), key_at + len(json.dumps(key)))
    if value_at < 0:
        return None
    value_at += 1  # past the opening quote
    index = next((i for i in range(len(tokens) - 1, -1, -1) if starts[i] <= value_at), None)
    if index is None:
        return None
    token = tokens[index]
    prefix = text[starts[index] : value_at]  # what the token holds before the value (a quote, a space)
    alternatives = {**token.top, token.token: token.logprob}
    mass: dict[str, float] = {}
    for option in allowed:
        fits = [lp for piece, lp in alternatives.items() if piece.startswith(prefix) and _begins(option, piece, prefix)]
        best = max(fits, default=None)
        if best is not None:
            mass[option] = math.exp(best)
    if chosen not in mass or len(token.top) == 0:
        return None
    # An allowed value whose first token is not among the alternatives is at most as likely as the least likely
    # one reported: the chosen value's share is then a lower bound.
    floor = math.exp(min(token.top.values()))
    return mass[chosen] / (sum(mass.values()) + floor * (len(set(allowed)) - len(mass)))


def _begins(option: str, piece: str, prefix: str) -> bool:
    """Whether `piece` (a token holding `prefix`, then the value's opening) starts `option`'s value."""
    rest = piece[len(prefix) :]
    return bool(rest) and (option + '"').startswith(rest)


@functools.lru_cache(maxsize=256)
def _validator(schema: str) -> Any:
    """The compiled validator of one schema (ValueError naming the fault when it is not a valid schema)."""
    import jsonschema  # type: ignore[import-untyped]

    try:
        document = json.loads(schema)
    except ValueError as exc:
        raise ValueError(f"the schema is not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError("the schema must be a JSON object")
    cls = jsonschema.validators.validator_for(document)
    try:
        cls.check_schema(document)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"not a valid JSON schema: {exc.message}") from None
    return cls(document)


def _best_error(schema: str, value: Any) -> str | None:
    import jsonschema  # type: ignore[import-untyped]

    error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{error.message}" + (f" (at {where})" if where else "")
