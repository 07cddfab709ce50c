"""When to try a call again: UNAVAILABLE only, a bounded number of times, never past the call's deadline."""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: the n-th retry waits uniform(0, min(max, initial * multiplier**n)).

    Only UNAVAILABLE is retried (the gateway was not reached, or is draining): every other code is an
    answer. A stream is retried only before its first chunk, so no text is ever repeated.
    """

    max_attempts: int = 4  # tries in all, the first included; 1 = never retry
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts: {self.max_attempts} must be at least 1")
        if not 0 <= self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError("initial_backoff_s and max_backoff_s: need 0 <= initial_backoff_s <= max_backoff_s")
        if self.multiplier < 1:
            raise ValueError(f"multiplier: {self.multiplier} must be at least 1")

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number `retry` (0 for the first retry)."""
        cap = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**retry)
        return rng.uniform(0.0, cap)

    def next_wait_s(self, code: grpc.StatusCode, attempt: int, remaining_s: float, rng: random.Random) -> float | None:
        """After try number `attempt` (1-based) failed with `code`: seconds to wait, or None to give up.

        Gives up on any code but UNAVAILABLE, after max_attempts tries, and when the wait would reach
        the deadline (`remaining_s` seconds away).
        """
        if code != grpc.StatusCode.UNAVAILABLE or attempt >= self.max_attempts:
            return None
        wait = self.backoff_s(attempt - 1, rng)
        return wait if wait < remaining_s else None
