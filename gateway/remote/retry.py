"""Retries for one provider: full-jitter exponential backoff, Retry-After honoured, bounded by the deadline.

Retrying the same provider is separate from falling back to the next one: the
remote tier retries a retryable error while `plan()` returns a delay, then moves on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0
    max_retry_after_s: float = 30.0  # a provider asking for longer is skipped, not waited on

    def backoff(self, retry_index: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^retry_index)]."""
        return rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * (2**retry_index)))

    def plan(
        self,
        retry_index: int,
        *,
        retries_left: int,
        retryable: bool,
        retry_after_s: float | None,
        remaining_s: float | None,
        rng: random.Random,
    ) -> float | None:
        """Seconds to wait before retry number `retry_index` (0-based), or None to stop retrying.

        With Retry-After the wait is that long plus a little jitter (never less);
        without it, jittered backoff. None when the error is not retryable, no
        retries are left, the provider asks for more than max_retry_after_s, or
        the wait would reach the deadline.
        """
        if not retryable or retries_left <= 0:
            return None
        if retry_after_s is not None:
            if retry_after_s > self.max_retry_after_s:
                return None
            delay = retry_after_s + rng.uniform(0.0, min(self.base_delay_s, 0.1 * retry_after_s + 0.01))
        else:
            delay = self.backoff(retry_index, rng)
        if remaining_s is not None and delay >= remaining_s:
            return None
        return delay
