"""Chat messages in the shapes the SDKs take."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.core.contracts import Message, Role


def split_system(messages: Sequence[Message]) -> tuple[str, list[Message]]:
    """System messages joined (for APIs that take the system prompt apart) and the rest, in order."""
    system = "\n\n".join(m.content for m in messages if m.role is Role.SYSTEM)
    rest = [m for m in messages if m.role is not Role.SYSTEM]
    return system, rest


def chat_dicts(messages: Sequence[Message]) -> list[dict[str, str]]:
    """OpenAI-style [{"role", "content"}] (OpenAI, xAI, Hugging Face)."""
    return [{"role": m.role.value, "content": m.content} for m in messages]
