"""Can the local tier finish this request within its deadline?

Pure: the decision reads the backend's load snapshot (what it is doing now and
how fast it has been) and the request's shape, nothing else. A request the tier
cannot finish in time is refused before any work starts, so the router can
escalate it at once (or answer RESOURCE_EXHAUSTED with this reason).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.contracts import LocalLoad


@dataclass(frozen=True, slots=True)
class CapacityDecision:
    ok: bool
    reason: str = ""
    est_finish_s: float = 0.0  # the estimate the decision was made on (0 when none was needed)


def check_capacity(
    load: LocalLoad,
    remaining_s: float | None,
    *,
    max_tokens: int = 1,
    label: bool = False,
    sheddable: bool = True,
) -> CapacityDecision:
    """No when the backend is down or full, or when it would answer after the deadline.

    The finish estimate is queue wait + prefill + steps x the measured step time at
    the batch size the request would join (max_tokens for free text; for a label
    answer the steps recent label answers took, see LocalLoad.est_finish_s).
    Before the backend has timed a batch it admits only requests that would start
    in the next batch. A backend whose own signals say it is saturated (vLLM's queue or KV
    cache) takes only work that is not `sheddable` (URGENT), still within its deadline.
    """
    if load.down:
        return CapacityDecision(False, f"local backend down: {load.down}")
    if load.saturated and sheddable:
        return CapacityDecision(False, f"local backend saturated ({load.saturated}); only URGENT requests go to it")
    if load.in_flight >= load.max_in_flight:
        return CapacityDecision(False, f"local in-flight limit reached ({load.in_flight}/{load.max_in_flight})")
    if remaining_s is None:
        return CapacityDecision(True)
    if remaining_s <= 0:
        return CapacityDecision(False, "the deadline has already passed")
    if not load.measured:
        if load.est_wait_s > 0:
            return CapacityDecision(False, "local model busy with its first batch (not timed yet)")
        return CapacityDecision(True)
    if load.would_delay:
        return CapacityDecision(
            False, f"joining the next local batch would push {load.would_delay} admitted requests past their deadlines"
        )
    finish = load.est_finish_s(max_tokens, label=label)
    if finish > remaining_s:
        what = "a label answer" if label else f"{max_tokens} tokens"
        return CapacityDecision(
            False,
            f"local tier would answer in ~{finish * 1000:.0f} ms ({what}; queue ~{load.est_wait_s * 1000:.0f} ms, "
            f"step ~{load.est_step_s * 1000:.1f} ms), after the {remaining_s * 1000:.0f} ms left",
            finish,
        )
    return CapacityDecision(True, est_finish_s=finish)
