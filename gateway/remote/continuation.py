"""Continuing a streamed answer on another provider after the first one broke mid-stream.

The client has already been sent `sent`, the text so far. The next provider is asked
for the rest of the same answer, one of two ways:

- prefill (Anthropic): the text so far is the conversation's last, assistant turn,
  which the Messages API continues in place. The API refuses a final assistant turn
  that ends in whitespace, so that whitespace is held back and the continuation's own
  leading whitespace is dropped (`Seam`), so the joined text reads as one answer;
- a continuation prompt (OpenAI, Google, xAI, Hugging Face, which have no prefill): the
  text so far as an assistant turn, then a user turn asking for the rest, without
  repeating it.

A structured answer (JSON) or a request with tools is not continued: a second
provider's JSON or tool call cannot be spliced onto a first one's. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gateway.core.contracts import BackendCall, Message, Role

CONTINUE_PROMPT = (
    "Your previous answer was cut off. Continue it exactly where it stopped: do not repeat any of it, "
    "do not add a preamble, and keep the same language and format."
)


def can_continue(call: BackendCall) -> bool:
    """Whether an answer to `call` broken mid-stream may be finished by another provider."""
    return call.response_format is None and not getattr(call, "tools", ())


def continuation_call(call: BackendCall, sent: str, *, prefill: bool, pieces_sent: int) -> BackendCall:
    """The call that asks the next provider for the rest of the answer; `pieces_sent` (stream pieces already
    sent, about a token each) comes off the token limit so the joined answer stays within it."""
    max_tokens = max(call.max_tokens - pieces_sent, 1)
    if prefill:
        messages = (*call.messages, Message(Role.ASSISTANT, sent.rstrip()))
    else:
        messages = (*call.messages, Message(Role.ASSISTANT, sent), Message(Role.USER, CONTINUE_PROMPT))
    return replace(call, messages=messages, max_tokens=max_tokens)


@dataclass
class Seam:
    """Joins the continuation onto the text already sent.

    While `trim` holds, the continuation's leading whitespace is dropped (the text sent ended in
    whitespace, which a prefilled provider writes again). After a continuation prompt (`tail`: the end of
    the text sent) a provider may start by repeating the last words it was shown: the first HOLD characters
    are held back, and what of them repeats the tail (at least MIN_OVERLAP characters) is dropped.
    """

    trim: bool
    tail: str = ""
    held: str = ""

    HOLD = 48
    MIN_OVERLAP = 8

    def piece(self, text: str) -> str:
        """What of `text` to send now ("" while it is held back)."""
        if self.trim:
            text = text.lstrip()
            if not text:
                return ""
            self.trim = False
        if not self.tail:
            return text
        self.held += text
        return self.flush() if len(self.held) >= self.HOLD else ""

    def flush(self) -> str:
        """What is held back, less the part that repeats the tail; nothing is held after it."""
        held, tail = self.held, self.tail
        self.held = self.tail = ""
        return held[_overlap(tail, held, self.MIN_OVERLAP) :]

    @staticmethod
    def after(sent: str, *, prefill: bool) -> Seam:
        tail = "" if prefill or not sent else sent[-200:]
        return Seam(trim=bool(sent) and sent[-1].isspace(), tail=tail)


def _overlap(tail: str, head: str, least: int) -> int:
    """The length of the longest start of `head` that `tail` ends with (0 when shorter than `least`)."""
    for size in range(min(len(tail), len(head)), least - 1, -1):
        if tail.endswith(head[:size]):
            return size
    return 0
