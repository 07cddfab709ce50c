"""How a broken stream's answer is handed to the next provider, and how its continuation is joined on."""

from __future__ import annotations

from gateway.core.contracts import BackendCall, Message, ResponseFormat, Role
from gateway.remote.continuation import CONTINUE_PROMPT, Seam, can_continue, continuation_call

CALL = BackendCall("r", (Message(Role.SYSTEM, "be brief"), Message(Role.USER, "is BTC up?")), max_tokens=10)


def test_prefill_ends_the_conversation_with_the_text_so_far_less_its_trailing_whitespace() -> None:
    call = continuation_call(CALL, "The trend ", prefill=True, pieces_sent=2)
    assert call.messages == (*CALL.messages, Message(Role.ASSISTANT, "The trend"))
    assert call.max_tokens == 8


def test_without_prefill_the_text_so_far_is_an_assistant_turn_and_a_user_turn_asks_for_the_rest() -> None:
    call = continuation_call(CALL, "The trend ", prefill=False, pieces_sent=30)
    assert call.messages[-2:] == (Message(Role.ASSISTANT, "The trend "), Message(Role.USER, CONTINUE_PROMPT))
    assert call.max_tokens == 1  # never below one


def test_structured_answers_are_not_continued() -> None:
    assert can_continue(CALL)
    assert not can_continue(BackendCall("r", CALL.messages, 10, response_format=ResponseFormat()))


def test_the_seam_drops_leading_whitespace_after_whitespace_and_repeats_of_the_tail() -> None:
    prefilled = Seam.after("The trend ", prefill=True)
    assert [prefilled.piece(p) for p in (" ", " is", " up")] == ["", "is", " up"]
    prompted = Seam.after("The trend ", prefill=False)
    assert prompted.piece("The trend is") == ""  # held back: it may repeat what was shown
    assert prompted.flush() == "is"
    short = Seam.after("it is ", prefill=False)
    assert short.piece("is up") == "" and short.flush() == "is up"  # a short overlap may be a real word
