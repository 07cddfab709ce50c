"""Request counters by tier and escalation reason, for GetUsage and the logs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gateway.core.contracts import Escalation, Result


@dataclass(frozen=True, slots=True)
class UsageSnapshot:
    requests_by_tier: dict[str, int] = field(default_factory=dict)
    escalations_by_reason: dict[str, int] = field(default_factory=dict)


class UsageCounters:
    """Counts since start. A router observer: `record(result)` is called once per answer."""

    def __init__(self) -> None:
        self._tiers: Counter[str] = Counter()
        self._escalations: Counter[str] = Counter()

    def record(self, result: Result) -> None:
        self._tiers[result.tier.value] += 1
        if result.escalation is not Escalation.NONE:
            self._escalations[result.escalation.value] += 1

    def snapshot(self) -> UsageSnapshot:
        return UsageSnapshot(dict(self._tiers), dict(self._escalations))
