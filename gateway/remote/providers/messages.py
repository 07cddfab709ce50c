"""Chat messages in the shapes the SDKs take."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.core.contracts import Message, Role
from gateway.core.openai_wire import chat_messages


def split_system(messages: Sequence[Message]) -> tuple[str, list[Message]]:
    """System messages joined (for APIs that take the system prompt apart) and the rest, in order."""
    system = "\n\n".join(m.content for m in messages if m.role is Role.SYSTEM)
    rest = [m for m in messages if m.role is not Role.SYSTEM]
    return system, rest


def chat_dicts(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """OpenAI-style [{"role", "content"}] with tool calls and results (OpenAI, xAI, Hugging Face)."""
    return chat_messages(list(messages))
