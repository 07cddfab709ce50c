"""A local backend's `generate` is its stream, read to the end."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from gateway.core.contracts import Completion, StreamEvent
from gateway.core.errors import BackendError


async def completion_of(events: AsyncGenerator[StreamEvent, None], backend: str) -> Completion:
    """The Completion that ends `events`; the stream is closed however this returns."""
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Completion):
                return event
    raise BackendError(f"{backend}: the stream ended without a completion", retryable=True)
