"""What the local HTTP backends (vLLM, Ollama) share around each request, as one object each composes.

`HttpBackendRuntime` admits a request (in-flight limit -> CapacityExceeded, a
deadline already passed -> DeadlineExceeded), counts it while it streams, keeps
the moving averages the load estimate uses (request latency, time to the first
piece, seconds per generated token), and runs the
backend's background poller: started on first use from an event loop, started
again if it ever stopped, cancelled by `aclose`. What a backend polls and how it
talks to its server stay in the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

from gateway.core.contracts import BackendCall, Completion, StreamEvent
from gateway.core.errors import CapacityExceeded, DeadlineExceeded


def ewma(average: float, sample: float) -> float:
    """The moving average of durations: the first sample as is, then 80 % old, 20 % new."""
    return sample if average == 0 else 0.8 * average + 0.2 * sample


def budget(call: BackendCall, timeout_s: float) -> tuple[float, float]:
    """Seconds a call may take (the backend's timeout, or less if the call's deadline is nearer) and,
    on the running loop's clock, when they run out (for `asyncio.timeout_at`)."""
    budget_s = timeout_s if call.deadline is None else min(timeout_s, call.deadline - time.monotonic())
    return budget_s, asyncio.get_running_loop().time() + budget_s


class HttpBackendRuntime:
    """Admission, the in-flight count, the latency average and the background poller of one backend."""

    def __init__(
        self,
        backend: str,
        max_in_flight: int,
        poll: Callable[[], Awaitable[None]],
        poll_s: float,
        *,
        check: Callable[[], None] | None = None,
    ) -> None:
        """`poll` reads the server once, every `poll_s` seconds, in the task "<backend>-poller"; `check` may
        refuse a request that passed the in-flight limit and the deadline."""
        self.backend = backend
        self.max_in_flight = max_in_flight
        self.in_flight = 0  # requests admitted and not finished
        self.avg_request_s = 0.0
        self.avg_first_s = 0.0  # time to the first piece (the server's queue and the prompt's prefill)
        self.avg_token_s = 0.0  # seconds per generated token after the first piece
        self._poll = poll
        self._poll_s = poll_s
        self._check = check
        self._poller: asyncio.Task[None] | None = None

    def start_poller(self) -> None:
        """Start the background poller unless it runs; without a running event loop, wait for first use."""
        if self._poller is not None and not self._poller.done():
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._poller = asyncio.create_task(self._poll_forever(), name=f"{self.backend}-poller")

    async def _poll_forever(self) -> None:
        while True:
            await self._poll()
            await asyncio.sleep(self._poll_s)

    async def aclose(self) -> None:
        """Stop the poller (the backend closes its own client)."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    def admit(self, call: BackendCall) -> None:
        if self.in_flight >= self.max_in_flight:
            raise CapacityExceeded(f"{self.backend} backend is at its in-flight limit ({self.max_in_flight})")
        if call.deadline is not None and time.monotonic() >= call.deadline:
            raise DeadlineExceeded(f"the request's deadline passed before {self.backend} could start it")
        if self._check is not None:
            self._check()

    async def stream(
        self, call: BackendCall, open_stream: Callable[[BackendCall], AsyncGenerator[StreamEvent, None]]
    ) -> AsyncGenerator[StreamEvent, None]:
        """`open_stream(call)`'s events, once the call is admitted; counted in flight until it ends or is closed."""
        self.start_poller()
        self.admit(call)
        self.in_flight += 1
        started = time.monotonic()
        first = 0.0
        try:
            async with contextlib.aclosing(open_stream(call)) as events:  # closed at once when the caller goes
                async for event in events:
                    now = time.monotonic()
                    if not first:
                        first = now
                        self.avg_first_s = ewma(self.avg_first_s, now - started)
                    if isinstance(event, Completion):  # before the yield: a caller may stop reading after it
                        self.avg_request_s = ewma(self.avg_request_s, now - started)
                        tokens = event.usage.completion_tokens
                        if tokens > 1 and now > first:
                            self.avg_token_s = ewma(self.avg_token_s, (now - first) / (tokens - 1))
                    yield event
        finally:
            self.in_flight -= 1
