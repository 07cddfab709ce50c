"""Lossless prompt compaction: what it removes, what it must never touch, and that providers get it."""

from __future__ import annotations

import json

import pytest

from gateway.core.contracts import BackendCall, Message, Role
from gateway.remote.compaction import compact_call, compact_text

SYSTEM = "You are a trading desk assistant.   Answer  in one word.\n\n\n\n"


def _call(*messages: Message, compact: bool = True) -> BackendCall:
    return BackendCall("r", messages, max_tokens=8, compact_prompt=compact)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("Is BTC   above\t\t60k?   \n\n\n\nAnswer  yes or no.  ", "Is BTC above 60k?\n\nAnswer yes or no."),
        ("Hi!\nIs ETH up today?\nThanks in advance!", "Is ETH up today?"),
        ("Same line.\n\nSame line.\n\nOther.", "Same line.\n\nOther."),
        ("price 64250.500000 and 60000.000", "price 64250.5 and 60000"),
        ("target $60,000 or 1,234.50", "target $60000 or 1234.50"),
        (
            'data: {"a": 1,  "b": [1, 2,\n 3], "s": "keep  these  spaces"} end',
            'data: {"a":1,"b":[1,2,3],"s":"keep  these  spaces"} end',
        ),
        ('```json\n{\n  "x": 1.50\n}\n```', '```json\n{"x":1.50}\n```'),
    ],
    ids=["whitespace", "pleasantries", "repeated-paragraph", "trailing-zeros", "separators", "json", "json-fence"],
)
def test_lossless_clean_up(before: str, after: str) -> None:
    assert compact_text(before) == after


@pytest.mark.parametrize(
    "text",
    [
        "python 3.10 and 1.20",  # versions and two-digit fractions
        "ip 10.0.0.100",  # dotted sequences
        "levels 100,200,300",  # maybe a list, not a separated number
        "```python\ndef f():\n    return  1\n```",  # code keeps its layout
        "{not json: here} [1] [a, b]",
    ],
)
def test_text_whose_form_may_carry_meaning_is_left_alone(text: str) -> None:
    assert compact_text(text) == text


def test_json_minified_keeps_every_value_as_written() -> None:
    raw = '{"price": 1.0e5, "qty": 10.000, "note": "a  b"}'
    spaced = raw.replace(", ", ",   ").replace(": ", ":   ")
    compact = compact_text(spaced)
    assert json.loads(compact) == json.loads(raw)
    assert "1.0e5" in compact and "a  b" in compact


def test_only_the_new_turn_changes_never_a_cached_prefix() -> None:
    earlier = "Was BTC   up  yesterday?"
    call = _call(
        Message(Role.SYSTEM, SYSTEM),
        Message(Role.USER, earlier),
        Message(Role.ASSISTANT, "Yes,   it was."),
        Message(Role.USER, "And   today?  "),
    )
    result = compact_call(call)
    assert [m.content for m in result.call.messages[:3]] == [SYSTEM, earlier, "Yes,   it was."]
    assert result.call.messages[3].content == "And today?"
    assert result.saved_chars == len("And   today?  ") - len("And today?")


def test_a_call_with_nothing_to_compact_is_returned_as_is() -> None:
    call = _call(Message(Role.SYSTEM, SYSTEM), Message(Role.USER, "Is BTC above 60k?"))
    assert compact_call(call).call is call
