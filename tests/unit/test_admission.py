"""Admission: each tier's adaptive limit, its class shares, its bounded queue and its refusals."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from gateway.core.contracts import Message, Priority, Request, Role
from gateway.core.errors import ResourceExhausted
from gateway.routing.admission import (
    Admission,
    AdmissionSettings,
    Gate,
    Klass,
    Permit,
    Refusal,
    Shed,
    TierLimits,
    request_class,
)
from gateway.routing.gradient import GradientLimit, GradientSettings

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def gate(limit: float = 10, clock: Clock | None = None, **settings: object) -> Gate:
    grad = GradientLimit(GradientSettings(initial=limit, min_limit=1, max_limit=1000))
    return Gate(
        "provider p",
        grad,
        AdmissionSettings(**settings),  # type: ignore[arg-type]
        monotonic=clock or Clock(),
        wall=lambda: NOW,
    )


def fill(g: Gate, klass: Klass, n: int) -> list[Permit]:
    permits = [g.try_enter(klass) for _ in range(n)]
    assert all(isinstance(p, Permit) for p in permits)
    return permits  # type: ignore[return-value]


def request(priority: Priority = Priority.NORMAL, client: str = "") -> Request:
    return Request("r", (Message(Role.USER, "hi"),), 8, priority=priority, client=client)


# -- the limit -----------------------------------------------------------------------


def test_the_limit_grows_while_answers_keep_their_usual_time() -> None:
    limit = GradientLimit(GradientSettings(initial=10, min_limit=1, max_limit=100))
    for _ in range(50):
        limit.on_answer(0.1, in_flight=limit.limit)
    assert limit.limit > 20


def test_the_limit_shrinks_when_answers_slow_down_under_load() -> None:
    limit = GradientLimit(GradientSettings(initial=50, min_limit=2, max_limit=100))
    for _ in range(100):
        limit.on_answer(0.1, in_flight=50)
    before = limit.limit
    for _ in range(30):
        limit.on_answer(1.0, in_flight=limit.limit)
    assert limit.limit < before / 2


def test_an_idle_tier_teaches_nothing_about_its_limit() -> None:
    limit = GradientLimit(GradientSettings(initial=40, min_limit=2, max_limit=100))
    for _ in range(50):
        limit.on_answer(5.0, in_flight=1)
    assert limit.limit == 40


def test_a_dropped_request_cuts_the_limit_and_never_below_its_floor() -> None:
    limit = GradientLimit(GradientSettings(initial=10, min_limit=4, max_limit=100))
    limit.on_dropped()
    assert limit.limit < 10
    for _ in range(100):
        limit.on_dropped()
    assert limit.limit == 4


def test_settings_that_cannot_hold_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="min_limit <= initial <= max_limit"):
        GradientSettings(initial=5, min_limit=10)


# -- classes -------------------------------------------------------------------------


def test_an_api_key_class_wins_over_the_requests_priority() -> None:
    classes = {"batch-job": Klass.BULK, "desk": Klass.URGENT}
    assert request_class(request(Priority.URGENT, "batch-job"), classes) is Klass.BULK
    assert request_class(request(Priority.NORMAL, "desk"), classes) is Klass.URGENT
    assert request_class(request(Priority.URGENT), classes) is Klass.URGENT
    assert request_class(request(), classes) is Klass.NORMAL


def test_normal_requests_leave_the_urgent_share_free() -> None:
    g = gate(10, urgent_share=0.2)
    fill(g, Klass.NORMAL, 8)
    refused = g.try_enter(Klass.NORMAL)
    assert isinstance(refused, Refusal)
    assert "NORMAL may hold 8 of 10" in refused.reason
    fill(g, Klass.URGENT, 2)  # the reserved share
    assert isinstance(g.try_enter(Klass.URGENT), Refusal)


def test_bulk_requests_use_at_most_their_share() -> None:
    g = gate(10, bulk_share=0.5)
    fill(g, Klass.BULK, 5)
    assert isinstance(g.try_enter(Klass.BULK), Refusal)
    assert isinstance(g.try_enter(Klass.NORMAL), Permit)


def test_a_released_permit_gives_its_room_back_once() -> None:
    g = gate(2, urgent_share=0.0)
    first, _ = fill(g, Klass.NORMAL, 2)
    first.release()
    first.release()
    assert g.in_flight == 1
    assert isinstance(g.try_enter(Klass.NORMAL), Permit)


# -- the queue -----------------------------------------------------------------------


async def test_a_waiter_gets_the_room_a_finished_request_frees() -> None:
    g = gate(2, urgent_share=0.0)
    held = fill(g, Klass.NORMAL, 2)
    waiting = asyncio.create_task(g.enter(Klass.NORMAL, None))
    await asyncio.sleep(0)
    assert g.queued() == 1 and not waiting.done()
    held[0].release()
    permit = await asyncio.wait_for(waiting, 5)
    assert isinstance(permit, Permit) and g.in_flight == 2 and g.queued() == 0


async def test_urgent_waiters_are_served_before_earlier_normal_ones() -> None:
    g = gate(2, urgent_share=0.0)
    held = fill(g, Klass.NORMAL, 2)
    normal = asyncio.create_task(g.enter(Klass.NORMAL, None))
    await asyncio.sleep(0)
    urgent = asyncio.create_task(g.enter(Klass.URGENT, None))
    await asyncio.sleep(0)
    held[0].release()
    await asyncio.wait_for(urgent, 5)
    assert not normal.done()
    normal.cancel()


async def test_a_full_queue_sheds_its_newest_bulk_waiter_for_an_urgent_arrival() -> None:
    g = gate(1, urgent_share=0.0, bulk_share=1.0, min_queue=2, queue_factor=0.0)
    fill(g, Klass.NORMAL, 1)
    older = asyncio.create_task(g.enter(Klass.BULK, None))
    newer = asyncio.create_task(g.enter(Klass.BULK, None))
    await asyncio.sleep(0)
    urgent = asyncio.create_task(g.enter(Klass.URGENT, None))
    await asyncio.sleep(0)
    with pytest.raises(Shed, match="gave way to a more important one"):
        await asyncio.wait_for(newer, 5)
    assert not older.done() and not urgent.done() and g.queued() == 2
    for task in (older, urgent):
        task.cancel()


async def test_a_full_queue_refuses_an_arrival_no_more_important_than_its_waiters() -> None:
    g = gate(1, urgent_share=0.0, min_queue=1, queue_factor=0.0)
    fill(g, Klass.NORMAL, 1)
    waiter = asyncio.create_task(g.enter(Klass.NORMAL, None))
    await asyncio.sleep(0)
    with pytest.raises(Shed, match="queue is full"):
        await g.enter(Klass.NORMAL, None)
    waiter.cancel()


async def test_a_wait_that_would_pass_the_deadline_is_refused_at_once_with_a_retry_after() -> None:
    clock = Clock()
    g = gate(2, clock, urgent_share=0.0)
    for permit in fill(g, Klass.NORMAL, 2):  # the tier answers in 1 s
        clock.t += 1.0
        permit.release()
        clock.t -= 1.0
    fill(g, Klass.NORMAL, 2)
    with pytest.raises(ResourceExhausted) as caught:
        await g.enter(Klass.NORMAL, deadline=clock.t + 0.5)
    assert "after the 500 ms left" in caught.value.message
    assert caught.value.resets_at is not None
    assert NOW < caught.value.resets_at <= NOW + timedelta(seconds=2)
    assert g.queued() == 0


async def test_a_waiter_whose_deadline_passes_leaves_the_queue_refused() -> None:
    g = gate(1, urgent_share=0.0)
    fill(g, Klass.NORMAL, 1)
    loop = asyncio.get_running_loop()
    g.now = loop.time  # a deadline on the loop's own clock
    with pytest.raises(Shed, match="before its deadline"):
        await g.enter(Klass.NORMAL, deadline=loop.time() + 0.01)
    assert g.queued() == 0 and g.in_flight == 1


async def test_a_caller_that_leaves_the_queue_takes_no_room() -> None:
    g = gate(1, urgent_share=0.0)
    held = fill(g, Klass.NORMAL, 1)
    waiting = asyncio.create_task(g.enter(Klass.NORMAL, None))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    held[0].release()
    assert g.in_flight == 0 and g.queued() == 0


def test_each_tier_has_its_own_gate() -> None:
    admission = Admission()
    slow = admission.provider("slow")
    fill(slow, Klass.URGENT, slow.limit)
    assert isinstance(admission.local().try_enter(Klass.NORMAL), Permit)
    assert isinstance(admission.provider("fast").try_enter(Klass.NORMAL), Permit)
    assert admission.provider("slow") is slow


# -- the door: the gateway's own work ------------------------------------------------------------------


def door(limit: int = 2) -> Admission:
    return Admission(
        AdmissionSettings(urgent_share=0.0, bulk_share=0.5),
        TierLimits(door=GradientSettings(initial=limit, min_limit=1, max_limit=100)),
    )


def test_a_full_door_refuses_with_a_retry_after() -> None:
    admission = door(1)
    held = admission.enter_door("", Priority.NORMAL)
    assert isinstance(held, Permit)
    refused = admission.enter_door("", Priority.NORMAL)
    assert isinstance(refused, Refusal) and "gateway concurrency limit reached" in refused.reason
    error = admission.refuse(refused)
    assert isinstance(error, ResourceExhausted) and error.resets_at is not None


def test_a_call_waiting_on_a_tier_lends_its_room_at_the_door() -> None:
    admission = door(1)
    first = admission.enter_door("", Priority.NORMAL)
    assert isinstance(first, Permit)
    with admission.inside(first):
        with admission.waiting():
            second = admission.enter_door("", Priority.NORMAL)
            assert isinstance(second, Permit)  # the first one is only waiting
            second.release()
        assert isinstance(admission.enter_door("", Priority.NORMAL), Refusal)  # back at work: full again
    assert isinstance(admission.enter_door("", Priority.NORMAL), Permit)  # released when the call ended


def test_a_batch_at_the_door_is_bulk_unless_its_key_is_urgent() -> None:
    admission = Admission(
        AdmissionSettings(urgent_share=0.0, bulk_share=0.5, key_classes={"desk": Klass.URGENT}),
        TierLimits(door=GradientSettings(initial=2, min_limit=1, max_limit=100)),
    )
    assert isinstance(admission.enter_door("", Priority.NORMAL, batch=True), Permit)
    assert isinstance(admission.enter_door("", Priority.NORMAL, batch=True), Refusal)  # BULK: half of 2
    assert isinstance(admission.enter_door("desk", Priority.NORMAL, batch=True), Permit)


def test_without_a_door_limit_every_call_enters() -> None:
    admission = Admission(limits=TierLimits(door=None))
    assert admission.enter_door("", Priority.NORMAL) is None
    with admission.inside(None), admission.waiting():
        pass


def test_time_spent_waiting_is_not_the_gates_own() -> None:
    clock = Clock()
    g = gate(4, clock, urgent_share=0.0)
    for _ in range(20):  # answers of 0.1 s of own work, each after 5 s waiting elsewhere
        permit = g.try_enter(Klass.NORMAL)
        assert isinstance(permit, Permit)
        permit.park()
        clock.t += 5.0
        permit.unpark()
        clock.t += 0.1
        permit.release()
    assert g.rtt_s is not None and g.rtt_s < 0.2


def test_a_call_the_lagging_loop_could_not_answer_in_time_is_refused_before_any_work() -> None:
    admission = Admission(limits=TierLimits(door=None), loop_lag_s=lambda: 0.1)
    refused = admission.enter_door("", Priority.NORMAL, remaining_s=0.3)
    assert isinstance(refused, Refusal)
    assert "runs ~100 ms behind, so a NORMAL call needs ~400 ms, more than the 300 ms left" in refused.reason
    assert admission.enter_door("", Priority.URGENT, remaining_s=0.3) is None  # URGENT needs fewer turns
    assert isinstance(admission.enter_door("", Priority.NORMAL, remaining_s=0.5, batch=True), Refusal)  # BULK
    assert admission.enter_door("", Priority.NORMAL, remaining_s=0.5) is None  # time enough: no door limit
    assert admission.enter_door("", Priority.NORMAL) is None  # no deadline
