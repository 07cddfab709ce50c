"""vLLM's /metrics text -> snapshot -> the LocalLoad the capacity policy reads."""

from __future__ import annotations

from gateway.core.contracts import LocalLoad
from gateway.routing.capacity import check_capacity
from local_models.vllm_metrics import VllmSnapshot, parse_metrics, to_local_load

# As vLLM 0.32 (CPU build) prints it, trimmed.
METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="smollm2"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="smollm2"} 5.0
vllm:num_requests_waiting_by_reason{engine="0",model_name="smollm2",reason="capacity"} 5.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="smollm2"} 0.42
vllm:lora_requests_info{max_lora="2",running_lora_adapters="trend@v1",waiting_lora_adapters=""} 1.79e+09
"""


def load(snapshot: VllmSnapshot | None, *, own_in_flight: int = 1) -> LocalLoad:
    return to_local_load(
        snapshot,
        own_in_flight=own_in_flight,
        max_in_flight=64,
        avg_request_s=2.0,
        kv_cache_full=0.8,
        max_waiting=5,
        now=100.0,
        stale_after_s=0.3,
    )


def test_gauges_are_read_and_summed_over_engines() -> None:
    two_engines = METRICS + 'vllm:num_requests_running{engine="1",model_name="smollm2"} 1.0\n'
    snap = parse_metrics(two_engines, at=1.0)
    assert (snap.running, snap.waiting, snap.kv_cache_usage, snap.healthy) == (4, 5, 0.42, True)


def test_older_kv_cache_gauge_name_is_understood() -> None:
    snap = parse_metrics('vllm:gpu_cache_usage_perc{model_name="m"} 0.5\n', at=1.0)
    assert snap.kv_cache_usage == 0.5


def test_garbage_lines_are_ignored() -> None:
    snap = parse_metrics('vllm:num_requests_waiting{x="1"} NaN\nnot a metric\nvllm:num_requests_running 2\n', at=1.0)
    assert (snap.waiting, snap.running) == (0, 2)


def test_queue_turns_into_in_flight_and_a_wait_estimate() -> None:
    result = load(parse_metrics(METRICS, at=99.9))
    assert result.in_flight == 8
    assert result.est_wait_s == 5 / 3 * 2.0


def test_a_queue_at_the_limit_sheds_normal_work_and_keeps_urgent_work() -> None:
    snap = VllmSnapshot(at=99.9, healthy=True, waiting=5, running=8, kv_cache_usage=0.3)
    result = load(snap)
    normal = check_capacity(result, remaining_s=None)
    assert not normal.ok and "5 requests waiting, the limit is 5" in normal.reason
    assert check_capacity(result, remaining_s=None, sheddable=False).ok


def test_a_kv_cache_at_the_limit_is_saturated_even_without_a_queue() -> None:
    snap = VllmSnapshot(at=99.9, healthy=True, waiting=0, running=8, kv_cache_usage=0.85)
    decision = check_capacity(load(snap), remaining_s=None)
    assert not decision.ok and "KV cache is 85% used" in decision.reason


def test_below_both_limits_vllm_is_not_saturated() -> None:
    snap = VllmSnapshot(at=99.9, healthy=True, waiting=4, running=8, kv_cache_usage=0.79)
    assert load(snap).saturated == ""


def test_urgent_work_on_a_saturated_server_still_needs_its_deadline_to_fit() -> None:
    snap = VllmSnapshot(at=99.9, healthy=True, waiting=10, running=2, kv_cache_usage=0.9)
    decision = check_capacity(load(snap), remaining_s=1.0, sheddable=False)
    assert not decision.ok and "after the 1000 ms left" in decision.reason


def test_a_wait_longer_than_the_deadline_sends_the_request_elsewhere() -> None:
    snap = VllmSnapshot(at=99.9, healthy=True, waiting=4, running=1, kv_cache_usage=0.5)
    decision = check_capacity(load(snap), remaining_s=1.0)
    assert not decision.ok and "queue ~8000 ms" in decision.reason and "after the 1000 ms left" in decision.reason


def test_stale_readings_fall_back_to_the_own_count() -> None:
    stale = VllmSnapshot(at=99.6, healthy=True, waiting=50, running=50, kv_cache_usage=1.0)
    stale_down = VllmSnapshot(at=99.6, healthy=False, error="connection refused")
    for snap in (stale, stale_down, None):
        result = load(snap, own_in_flight=3)
        assert (result.in_flight, result.est_wait_s, result.down, result.saturated) == (3, 0.0, "", "")
        assert check_capacity(result, remaining_s=None).ok


def test_a_fresh_unhealthy_reading_is_no_capacity_and_says_why() -> None:
    result = load(VllmSnapshot(at=99.9, healthy=False, error="connection refused"), own_in_flight=0)
    decision = check_capacity(result, remaining_s=None)
    assert not decision.ok
    assert decision.reason == "local backend down: vllm is not healthy: connection refused"
