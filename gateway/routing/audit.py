"""The audit: a sample of the confident local answers of learning tasks, asked of the remote tier as well.

`observe(request, result)` is an answer observer. For a task with `learn = true`
it picks `audit_rate` of the answers the local tier kept (label tasks, the
task's own threshold, not tagged `learn = "false"`) and, in the background,
never delaying the client:

- asks the router to decide the request as an escalation would, for the
  request as it was answered (access control and the policy applied: a
  local-only API key, a LOCAL_ONLY request, anything under `offline = true` or a
  `local_only` rule gets no provider), so nothing that may not leave the box is
  ever sent;
- reserves the call's token estimate against `audit:<provider>` in the shared
  ledger, capped at `audit_budget_share` of the provider's daily budget, and
  tries the next provider when that share is spent;
- records whether the remote label agrees with the local one, hands both
  answers on (they become a training row) and has the ThresholdGuard review
  the task's live accuracy.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Set
from datetime import UTC, datetime
from typing import Protocol

from gateway.core.confidence import choose_label
from gateway.core.contracts import BackendCall, Escalation, Request, Result, TaskCatalog, Tier
from gateway.core.errors import GatewayError
from gateway.core.learning import may_learn_from
from gateway.routing.accuracy import ThresholdGuard
from gateway.routing.decision import Decision
from gateway.state.budget.ledger import TokenLedger, utc_day
from gateway.state.learning.store import AuditRecord, TrainingStore

log = logging.getLogger(__name__)

AUDIT_PREFIX = "audit:"


class SecondOpinion(Protocol):
    """What the audit asks of the router (gateway/routing/router.py)."""

    def decide(self, request: Request) -> Decision: ...

    async def second_opinion(self, decision: Decision, provider: str) -> Result | None: ...


class Auditor:
    def __init__(
        self,
        router: SecondOpinion,
        tasks: TaskCatalog,
        guard: ThresholdGuard,
        store: TrainingStore,
        ledger: TokenLedger,
        budgets: Mapping[str, int],
        *,
        learning: Set[str],
        rate: float,
        budget_share: float,
        estimate: Callable[[BackendCall], int],
        on_audit: Callable[[Request, Result, Result], None] = lambda *_: None,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._router = router
        self._tasks = tasks
        self._guard = guard
        self._store = store
        self._ledger = ledger
        self._budgets = budgets
        self._learning = frozenset(learning)
        self._rate = rate
        self._share = budget_share
        self._estimate = estimate
        self._on_audit = on_audit
        self._rng = rng or random.Random()
        self._wall = wall
        self._pending: set[asyncio.Task[None]] = set()

    def observe(self, request: Request, result: Result) -> None:
        """An answer observer: maybe audit this answer, in the background (never blocks, never raises)."""
        if self._rate <= 0 or not self.eligible(request, result) or self._rng.random() >= self._rate:
            return
        task = asyncio.get_running_loop().create_task(self._audit(request, result), name="audit")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def eligible(self, request: Request, result: Result) -> bool:
        spec = self._tasks.get(request.task)
        return (
            request.task in self._learning
            and spec is not None
            and bool(spec.labels)
            and result.tier is Tier.LOCAL
            and result.escalation is Escalation.NONE
            and result.confidence is not None
            and request.min_confidence is None
            and may_learn_from(request)
        )

    async def wait_idle(self) -> None:
        """Until the audits started so far have finished."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def aclose(self) -> None:
        """Drop the audits still running (they are a sample; none is owed to a client)."""
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)

    async def _audit(self, request: Request, local: Result) -> None:
        try:
            decision = self._router.decide(request)  # as an escalation of this request would be decided
            if not decision.plan.remote_allowed:
                return
            for provider in decision.plan.order:
                if await self._audit_with(provider, decision, local, self._estimate(decision.call)):
                    return
        except Exception as exc:  # noqa: BLE001 - an audit that fails is skipped, never a crash
            log.warning("audit failed", extra={"request_id": request.request_id, "error": repr(exc)})

    async def _audit_with(self, provider: str, decision: Decision, local: Result, estimate: int) -> bool:
        """True once this provider answered (or the request may not go out at all)."""
        request = decision.request
        budget = self._budgets.get(provider, 0)
        cap = int(budget * self._share) if budget else None
        if cap == 0:
            return False
        day = utc_day(datetime.fromtimestamp(self._wall(), UTC))
        reservation = await self._ledger.reserve(AUDIT_PREFIX + provider, estimate, day=day, limit=cap)
        if reservation is None:
            return False  # this provider's audit share is spent today
        try:
            remote = await self._router.second_opinion(decision, provider)
        except GatewayError as exc:
            await self._ledger.release(reservation)
            log.info(
                "audit call failed",
                extra={"request_id": request.request_id, "provider": provider, "error": exc.message},
            )
            return False
        if remote is None:
            await self._ledger.release(reservation)
            return False
        await self._ledger.reconcile(reservation, remote.usage.prompt_tokens + remote.usage.completion_tokens)
        spec = self._tasks.get(request.task)
        labels = spec.labels if spec is not None else ()
        remote_label = choose_label(remote.text, labels)
        if remote_label is not None:  # a remote answer that names no label cannot judge the local one
            agreed = remote_label == choose_label(local.text, labels)
            threshold = self._guard.threshold(request.task)
            await self._store.add_audits([AuditRecord(self._wall(), request.task, threshold, agreed)])
        self._on_audit(request, local, remote)
        await self._guard.review(request.task)
        return True
