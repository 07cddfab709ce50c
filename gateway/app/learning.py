"""The learning loop from config: capture of training rows, the audit, and the live threshold guard.

Built only when `[learning] enabled` and some task has `learn = true`; otherwise
the router reads the task catalog as it is and nothing is captured or audited.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from gateway.config import Config
from gateway.core.accuracy import LiveAccuracy
from gateway.core.contracts import TaskCatalog
from gateway.observe.metrics import Metrics
from gateway.observe.training_recorder import TrainingRecorder
from gateway.remote.estimate import CharEstimator
from gateway.routing.accuracy import DAY_S, GuardSettings, ThresholdGuard
from gateway.routing.audit import Auditor, SecondOpinion
from gateway.routing.recording_router import AnswerObserver
from gateway.state.open import SharedState

log = logging.getLogger(__name__)


class Learning:
    """The parts of the loop; `tasks` is the catalog the router should read."""

    def __init__(self, config: Config, tasks: TaskCatalog, state: SharedState, metrics: Metrics) -> None:
        self._config = config
        self._state = state
        self.learning = frozenset(name for name, task in config.tasks.items() if task.learn)
        self.on = config.learning.enabled and bool(self.learning)
        self.tasks: TaskCatalog = tasks
        self.guard: ThresholdGuard | None = None
        self.recorder: TrainingRecorder | None = None
        self.auditor: Auditor | None = None
        if not self.on:
            return
        cfg = config.learning
        settings = GuardSettings(
            target=cfg.target_accuracy,
            min_audits=cfg.min_audits,
            window_s=cfg.audit_window_days * DAY_S,
            step=cfg.threshold_step,
            max_threshold=cfg.max_threshold,
            on_low=cfg.on_low_accuracy,
        )

        def show(live: LiveAccuracy) -> None:
            metrics.accuracy(
                live.task,
                audited=live.audited,
                estimate=live.estimate,
                low=live.low,
                high=live.high,
                threshold=live.threshold,
            )

        self.guard = ThresholdGuard(
            tasks, state.training, settings, default_threshold=config.routing.default_min_confidence, on_estimate=show
        )
        self.tasks = self.guard
        self.recorder = TrainingRecorder(
            state.training, self.guard, self.learning, max_rows=cfg.max_rows, max_age_days=cfg.max_age_days
        )
        log.info(
            f"learning: keeping escalated requests and remote answers of tasks {', '.join(sorted(self.learning))} "
            f"as training rows (prompt text included; [learning] enabled = false turns it off); "
            f"auditing {cfg.audit_rate:.1%} of the answers kept locally"
        )

    async def start(self) -> None:
        """Load the thresholds raised earlier and start writing rows."""
        if self.guard is not None:
            await self.guard.load()
        if self.recorder is not None:
            self.recorder.start()

    def audit(self, router: SecondOpinion, budgets: Mapping[str, int]) -> None:
        """Audit `audit_rate` of the confident local answers through `router`, within the budget share."""
        cfg = self._config.learning
        if self.guard is None or cfg.audit_rate <= 0:
            return
        recorder = self.recorder
        self.auditor = Auditor(
            router,
            self.tasks,
            self.guard,
            self._state.training,
            self._state.ledger,
            budgets,
            learning=self.learning,
            rate=cfg.audit_rate,
            budget_share=cfg.audit_budget_share,
            estimate=CharEstimator(self._config.budget.chars_per_token),
            on_audit=recorder.record_audit if recorder is not None else lambda *_: None,
        )

    async def accuracy(self) -> list[LiveAccuracy]:
        """The live estimate of every learning task (for GetUsage, the dashboard and `gateway usage`)."""
        if self.guard is None:
            return []
        return await self.guard.estimates(sorted(self.learning))

    def observers(self) -> list[AnswerObserver]:
        observers: list[AnswerObserver] = []
        if self.recorder is not None:
            observers.append(self.recorder.record)
        if self.auditor is not None:
            observers.append(self.auditor.observe)
        return observers

    async def aclose(self) -> None:
        """Stop the audits in flight, then write out the queued rows."""
        if self.auditor is not None:
            await self.auditor.aclose()
        if self.recorder is not None:
            await self.recorder.aclose()
