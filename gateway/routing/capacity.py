"""Can the local tier start this request within its deadline?"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.contracts import LocalLoad


@dataclass(frozen=True, slots=True)
class CapacityDecision:
    ok: bool
    reason: str = ""


def check_capacity(load: LocalLoad, remaining_s: float | None) -> CapacityDecision:
    """No when the backend is full, or when its queue wait estimate exceeds the time left."""
    if load.in_flight >= load.max_in_flight:
        return CapacityDecision(False, f"local in-flight limit reached ({load.in_flight}/{load.max_in_flight})")
    if remaining_s is not None and load.est_wait_s >= remaining_s:
        return CapacityDecision(
            False, f"local queue wait ~{load.est_wait_s * 1000:.0f} ms exceeds the {remaining_s * 1000:.0f} ms left"
        )
    return CapacityDecision(True)
