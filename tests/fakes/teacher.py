"""A teacher stand-in for the learning loop: the OpenAI wire format, answering each request with its gold label.

It speaks exactly what FakeOpenAI speaks (the official SDK drives it), but the reply
to a request is the label `answers` holds for its last user message, as a capable
commercial model would answer a labelled question; an unknown question gets "neutral".
It stands in for the commercial API that cannot be reached here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.base import Reply
from tests.fakes.openai_fake import FakeOpenAI


@dataclass
class TeacherOpenAI(FakeOpenAI):
    answers: Mapping[str, str] = field(default_factory=dict)
    fallback: str = "neutral"

    def _answer(self, body: dict[str, Any]) -> None:
        users = [str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user"]
        self.reply = Reply(self.answers.get(users[-1] if users else "", self.fallback))

    def completion(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        self._answer(body)
        return super().completion(body, model)

    def stream_frames(self, body: dict[str, Any], model: str) -> list[str]:
        self._answer(body)
        return super().stream_frames(body, model)
