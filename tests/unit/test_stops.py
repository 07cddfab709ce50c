"""Stop sequences over generated text: where an answer ends, and what a stream may send yet."""

from __future__ import annotations

from gateway.core.stops import cut, first_stop, safe_length


def test_the_answer_ends_before_the_earliest_stop_sequence() -> None:
    assert cut("buy 10 AAPL\nsell 5 MSFT", ["\n"]) == ("buy 10 AAPL", True)
    assert cut("buy; sell. hold", [".", ";"]) == ("buy", True)
    assert cut("no stop here", ["END"]) == ("no stop here", False)
    assert cut("END at once", ["END"]) == ("", True)
    assert first_stop("abc", []) is None and first_stop("abc", [""]) is None


def test_a_stream_holds_back_what_could_still_become_a_stop_sequence() -> None:
    assert safe_length("the trend is up E", ["END"]) == len("the trend is up ")
    assert safe_length("the trend is up EN", ["END", "Nope"]) == len("the trend is up ")
    assert safe_length("the trend is up", ["END"]) == len("the trend is up")
    assert safe_length("ab", ["abc"]) == 0
    assert safe_length("xy", []) == 2
