"""Local accuracy measured live: the audit's agreement -> an estimate with its interval -> the task's threshold.

`ThresholdGuard` is the task catalog the router reads: the tasks as configured or
carded, with the thresholds the audit raised. After each audit it tallies the
task's audits at the threshold now in force (within the window); once there are
`min_audits` of them and their one-sided Clopper-Pearson upper bound at `level` lies
below the target (the accuracy is below target with that confidence; the same exact
binomial bounds the card's threshold was chosen with, gateway/core/guarantee.py), it
raises the threshold by `step` (never past `max_threshold`; kept in the shared
store, so every replica and a restart see it), or only logs an alarm. Audits at
an older threshold stop counting, so each raise starts a fresh estimate. A raise
belongs to the adapter version it was measured on (`task@version`): a new version
starts from its own calibrated threshold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from gateway.core.accuracy import LiveAccuracy, bounds
from gateway.core.contracts import TaskCatalog, TaskSpec
from gateway.core.guarantee import DEFAULT_LEVEL
from gateway.state.learning.store import TrainingStore

log = logging.getLogger(__name__)

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class GuardSettings:
    target: float = 0.95
    min_audits: int = 30
    window_s: float = 7 * DAY_S
    step: float = 0.02
    max_threshold: float = 0.99
    on_low: Literal["raise", "alarm"] = "raise"
    level: float = DEFAULT_LEVEL  # of the bounds on the live accuracy


class ThresholdGuard:
    def __init__(
        self,
        inner: TaskCatalog,
        store: TrainingStore,
        settings: GuardSettings,
        *,
        default_threshold: float,
        on_estimate: Callable[[LiveAccuracy], None] = lambda _: None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._inner = inner
        self._store = store
        self._settings = settings
        self._default = default_threshold
        self._on_estimate = on_estimate
        self._wall = wall
        self._raised: dict[str, float] = {}
        self._live: dict[str, LiveAccuracy] = {}

    # -- TaskCatalog ---------------------------------------------------------------------------

    def get(self, name: str) -> TaskSpec | None:
        return self._with_raise(self._inner.get(name))

    def all(self) -> list[TaskSpec]:
        return [spec for spec in map(self._with_raise, self._inner.all()) if spec is not None]

    # -- the live estimate ---------------------------------------------------------------------

    def live(self) -> Mapping[str, LiveAccuracy]:
        return dict(self._live)

    def threshold(self, task: str) -> float:
        spec = self.get(task)
        return spec.threshold if spec is not None and spec.threshold is not None else self._default

    async def load(self) -> None:
        """Pick up the thresholds raised earlier (by this replica before a restart, or by another)."""
        self._raised = await self._store.thresholds()

    async def estimates(self, tasks: Sequence[str]) -> list[LiveAccuracy]:
        """Each task's estimate (read only), with the raised thresholds read once."""
        await self.load()
        return [await self._estimate(task) for task in tasks]

    async def review(self, task: str) -> LiveAccuracy:
        """The estimate, acted on when accuracy is below target with confidence."""
        await self.load()
        live = await self._estimate(task)
        if live.audited >= self._settings.min_audits and live.high < self._settings.target:
            await self._below_target(live)
        return live

    async def _estimate(self, task: str) -> LiveAccuracy:
        """The task's audits at its current threshold, within the window."""
        threshold = self.threshold(task)
        tally = await self._store.tally(task, threshold=threshold, since=self._wall() - self._settings.window_s)
        low, high = bounds(tally.agreed, tally.audited, self._settings.level)
        live = LiveAccuracy(task, threshold, tally.audited, tally.agreed, low, high, self._settings.target)
        self._live[task] = live
        self._on_estimate(live)
        return live

    async def _below_target(self, live: LiveAccuracy) -> None:
        what = (
            f"task {live.task}: answers kept locally at threshold {live.threshold:.3f} agree with the remote tier "
            f"{live.agreed}/{live.audited} times ({live.estimate:.3f}, {self._settings.level:.0%} bounds "
            f"{live.low:.3f}-{live.high:.3f}), "
            f"below the target {live.target:.3f}"
        )
        raised = min(round(live.threshold + self._settings.step, 6), self._settings.max_threshold)
        if self._settings.on_low == "alarm" or raised <= live.threshold:
            log.error(f"{what}; [learning] on_low_accuracy = alarm or the threshold is at its maximum: not raised")
            return
        key = _scope(self._inner.get(live.task), live.task)
        await self._store.set_threshold(key, raised)
        self._raised[key] = raised
        log.warning(f"{what}; threshold raised to {raised:.3f}")

    def _with_raise(self, spec: TaskSpec | None) -> TaskSpec | None:
        """The spec with the threshold raised for it, when that is above its own (a card's or the config's)."""
        if spec is None:
            return spec
        raised = self._raised.get(_scope(spec, spec.name))
        if raised is None:
            return spec
        own = spec.threshold if spec.threshold is not None else self._default
        return replace(spec, threshold=max(own, raised))


def _scope(spec: TaskSpec | None, task: str) -> str:
    """What a raise belongs to: the adapter version serving the task (`task@version`), or the task itself."""
    return f"{task}@{spec.adapter.version}" if spec is not None and spec.adapter is not None else task
