"""The audit of confident local answers: what is sent (never anything that may not leave the box), what it
may spend, and how the live accuracy moves a task's threshold."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.config import RoutingConfig, RuleConfig, TaskConfig
from gateway.core.accuracy import bounds
from gateway.core.binomial import lower_bound
from gateway.core.contracts import (
    AdapterRef,
    Attempt,
    BackendCall,
    Completion,
    Message,
    Privacy,
    Request,
    Role,
    TaskSpec,
    Usage,
)
from gateway.routing.accuracy import GuardSettings, ThresholdGuard
from gateway.routing.audit import Auditor
from gateway.routing.recording_router import RecordingRouter
from gateway.routing.router import Router
from gateway.routing.tasks import ChainedTasks, ConfigTasks
from gateway.state.budget.memory import MemoryLedger
from gateway.state.learning.sqlite import SqliteTrainingStore
from gateway.state.learning.store import Tally
from tests.unit.test_router import RemoteAnswer, ScriptedLocal

TASKS = {"trend": TaskConfig(labels=("up", "down"), min_confidence=0.7, learn=True), "other": TaskConfig()}
NOW = 1_795_000_000.0


class Carded:
    """The trend task as an adapter card serves it (so ListModels lists it with its threshold)."""

    def __init__(self, version: str = "v1") -> None:
        self.spec = TaskSpec(
            "trend", ("up", "down"), 0.7, AdapterRef("trend-lora", version, f"/adapters/trend/{version}")
        )

    def get(self, name: str) -> TaskSpec | None:
        return self.spec if name == "trend" else None

    def all(self) -> list[TaskSpec]:
        return [self.spec]


@dataclass
class Teacher:
    """A recording remote tier stand-in: answers `text`, and keeps every call it was sent."""

    text: str = "up"
    calls: list[tuple[BackendCall, tuple[str, ...]]] = field(default_factory=list)

    def providers(self) -> tuple[str, ...]:
        return ("openai", "anthropic")

    def models(self) -> list[object]:
        return []

    async def complete(
        self, call: BackendCall, *, order: tuple[str, ...], deadline: float | None, urgent: bool = False
    ) -> RemoteAnswer:
        self.calls.append((call, order))
        return RemoteAnswer(
            Completion(self.text, order[0], "teacher", Usage(20, 1), "stop"), (Attempt(order[0], "teacher", "ok", 1.0),)
        )

    def stream(self, *args: object, **kwargs: object) -> AsyncIterator[object]:
        raise NotImplementedError


@dataclass
class Rig:
    answerer: RecordingRouter
    router: Router
    auditor: Auditor
    guard: ThresholdGuard
    teacher: Teacher
    store: SqliteTrainingStore
    audited: list[tuple[str, str]]

    async def ask(self, request: Request) -> None:
        await self.answerer.generate(request)
        await self.auditor.wait_idle()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteTrainingStore]:
    opened = SqliteTrainingStore(tmp_path / "training.sqlite3")
    yield opened
    await opened.aclose()


def rig(
    store: SqliteTrainingStore,
    *,
    teacher: Teacher | None = None,
    rate: float = 1.0,
    budgets: dict[str, int] | None = None,
    share: float = 0.5,
    offline: bool = False,
    rules: tuple[RuleConfig, ...] = (),
    settings: GuardSettings | None = None,
    version: str = "v1",
) -> Rig:
    teacher = teacher or Teacher()
    guard = ThresholdGuard(
        ChainedTasks(Carded(version), ConfigTasks(TASKS)),
        store,
        settings or GuardSettings(min_audits=5),
        default_threshold=0.6,
        wall=lambda: NOW,
    )
    router = Router(ScriptedLocal(prob=0.9), guard, RoutingConfig(rules=rules), remote=teacher, offline=offline)  # type: ignore[arg-type]
    audited: list[tuple[str, str]] = []
    auditor = Auditor(
        router,
        guard,
        guard,
        store,
        MemoryLedger(),
        budgets if budgets is not None else {"openai": 100_000, "anthropic": 100_000},
        learning={"trend"},
        rate=rate,
        budget_share=share,
        estimate=lambda call: 50,
        on_audit=lambda request, local, remote: audited.append((local.text, remote.text)),
        rng=random.Random(7),
        wall=lambda: NOW,
    )
    return Rig(RecordingRouter(router, on_answer=[auditor.observe]), router, auditor, guard, teacher, store, audited)


def ask(**fields: object) -> Request:
    return Request("r1", (Message(Role.USER, "Closes rose 10 days. Trend?"),), 4, task="trend", **fields)  # type: ignore[arg-type]


async def test_a_confident_local_answer_is_audited_in_the_background_and_the_agreement_recorded(
    store: SqliteTrainingStore,
) -> None:
    r = rig(store)
    await r.ask(ask())
    [(call, order)] = r.teacher.calls
    assert order == ("anthropic",)  # the first provider of the plan's order
    assert call.messages[-1].content == "Closes rose 10 days. Trend?" and call.labels == ("up", "down")
    assert r.audited == [("up", "up")]
    assert await store.tally("trend", threshold=0.7, since=0) == Tally(1, 1)
    assert r.guard.live()["trend"].audited == 1


async def test_nothing_that_may_not_leave_the_box_is_ever_audited(store: SqliteTrainingStore) -> None:
    private = (RuleConfig(match_tag={"desk": "private"}, local_only=True),)
    for r, request in (
        (rig(store), ask(privacy=Privacy.LOCAL_ONLY)),
        (rig(store, offline=True), ask()),
        (rig(store, rules=private), ask(tags={"desk": "private"})),
        (rig(store), ask(tags={"learn": "false"})),
        (rig(store), ask(min_confidence=0.5)),  # its own threshold: not the task's to estimate
        (rig(store), Request("r2", (Message(Role.USER, "hi"),), 4, task="other")),  # not a learning task
    ):
        await r.ask(request)
        assert r.teacher.calls == [], request
    assert await store.tally("trend", threshold=0.7, since=0) == Tally(0, 0)


async def test_the_audit_spends_at_most_its_share_of_each_budget_then_moves_on_or_stops(
    store: SqliteTrainingStore,
) -> None:
    # shares of 50 and 100 tokens; each audit reserves its estimate (50) and is charged what it used (21)
    r = rig(store, budgets={"anthropic": 100, "openai": 200}, share=0.5)
    for _ in range(6):
        await r.ask(ask())
    assert [order for _, order in r.teacher.calls] == [("anthropic",), ("openai",), ("openai",), ("openai",)]
    unlimited = rig(store, budgets={"anthropic": 100, "openai": 0}, share=0.5)  # 0: openai has no daily budget
    for _ in range(4):
        await unlimited.ask(ask())
    assert [order for _, order in unlimited.teacher.calls] == [("anthropic",)] + [("openai",)] * 3
    nothing = rig(store, share=0.0)
    await nothing.ask(ask())
    assert nothing.teacher.calls == []


async def test_live_accuracy_below_target_raises_the_threshold_seen_in_list_models(store: SqliteTrainingStore) -> None:
    r = rig(store, teacher=Teacher(text="down"), settings=GuardSettings(min_audits=5, step=0.05, max_threshold=0.8))
    for _ in range(5):  # the teacher disagrees every time: 0 of 5, upper bound 0.45 at 95 %, below the target 0.95
        await r.ask(ask())
    assert r.guard.threshold("trend") == pytest.approx(0.75)
    assert await store.thresholds() == {"trend@v1": pytest.approx(0.75)}  # raised for the version it measured
    for _ in range(10):  # a fresh estimate at 0.75 is below too: raised to the maximum, and no further
        await r.ask(ask())
    assert r.guard.threshold("trend") == pytest.approx(0.8)
    adapter_entry = next(m for m in r.router.models() if m.task == "trend")
    assert adapter_entry.metrics["threshold"] == pytest.approx(0.8)  # what ListModels shows
    restarted = rig(store)
    await restarted.guard.load()
    assert restarted.guard.threshold("trend") == pytest.approx(0.8)  # kept in the shared store
    retrained = rig(store, version="v2")  # a new version, calibrated anew, starts from its own threshold
    await retrained.guard.load()
    assert retrained.guard.threshold("trend") == 0.7


async def test_alarm_mode_only_logs(store: SqliteTrainingStore, caplog: pytest.LogCaptureFixture) -> None:
    r = rig(store, teacher=Teacher(text="down"), settings=GuardSettings(min_audits=3, on_low="alarm"))
    for _ in range(3):
        await r.ask(ask())
    assert r.guard.threshold("trend") == 0.7 and await store.thresholds() == {}
    assert "below the target 0.950" in caplog.text and "not raised" in caplog.text


def test_live_bounds_are_the_ones_thresholds_are_chosen_with() -> None:
    assert bounds(0, 0) == (0.0, 1.0)
    low, high = bounds(95, 100)  # scipy.stats.beta.ppf(0.05, 95, 6) and .ppf(0.95, 96, 5)
    assert low == pytest.approx(0.8977466, abs=1e-6) and high == pytest.approx(0.9800944, abs=1e-6)
    assert low == lower_bound(95, 100, 0.95)
    low, high = bounds(30, 30)
    assert high == 1.0 and low == pytest.approx(0.05 ** (1 / 30))
    assert bounds(0, 5)[1] == pytest.approx(1 - 0.05 ** (1 / 5))  # 0.451: below a 0.95 target, so it raises
    assert bounds(28, 30, 0.99)[0] < bounds(28, 30, 0.95)[0]
