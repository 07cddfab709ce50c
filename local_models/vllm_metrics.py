"""vLLM's Prometheus /metrics text -> a load snapshot -> the LocalLoad the capacity policy reads.

Pure functions: the backend's poller fetches the text off the request path and
keeps the latest snapshot; `to_local_load` is what `load()` returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.core.contracts import LocalLoad

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")  # the second: vLLM releases before 0.10


@dataclass(frozen=True, slots=True)
class VllmSnapshot:
    """What vLLM last said about itself."""

    at: float  # time.monotonic() of the reading
    healthy: bool
    waiting: int = 0
    running: int = 0
    kv_cache_usage: float = 0.0  # 0..1
    error: str = ""  # why the last reading failed, when it did


def parse_metrics(text: str, at: float) -> VllmSnapshot:
    """Sum the request gauges over every model/engine label set; the KV cache usage is the highest one."""
    waiting = running = 0.0
    kv: float | None = None
    kv_seen: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, value = _sample(line)
        if name is None:
            continue
        if name == WAITING:
            waiting += value
        elif name == RUNNING:
            running += value
        elif name in KV_CACHE:
            kv_seen[name] = max(kv_seen.get(name, 0.0), value)
    for name in KV_CACHE:
        if name in kv_seen:
            kv = kv_seen[name]
            break
    return VllmSnapshot(at=at, healthy=True, waiting=int(waiting), running=int(running), kv_cache_usage=kv or 0.0)


def _sample(line: str) -> tuple[str | None, float]:
    """`name{labels} value [timestamp]` -> (name, value); (None, 0) for lines that do not parse."""
    brace = line.find("{")
    if brace >= 0:
        name = line[:brace]
        close = line.rfind("}")
        rest = line[close + 1 :].split() if close > brace else []
    else:
        name, *rest = line.split()
    if not rest:
        return None, 0.0
    try:
        value = float(rest[0])
    except ValueError:
        return None, 0.0
    return (name.strip(), value) if math.isfinite(value) else (None, 0.0)


def to_local_load(
    snapshot: VllmSnapshot | None,
    *,
    own_in_flight: int,
    max_in_flight: int,
    avg_request_s: float,
    kv_cache_full: float,
    now: float,
    stale_after_s: float,
    max_waiting: int = 5,
) -> LocalLoad:
    """The capacity policy's view of vLLM.

    in_flight: the larger of this gateway's own count and vLLM's running + waiting (other
    clients share the server). Saturated (llm-d's rule) when `max_waiting` requests wait or
    its KV cache is at `kv_cache_full`: sheddable requests go elsewhere, URGENT ones still
    go when the wait estimate fits their deadline. est_wait_s: each waiting request ahead
    of ours waits for one of the running ones to finish, so roughly
    waiting / running x the average request time measured here. A snapshot older than
    `stale_after_s` is ignored (only the gateway's own count is used). A fresh unhealthy
    one (vLLM not answering /health) is no capacity at all: `down` says why.
    """
    if snapshot is None or now - snapshot.at > stale_after_s:
        return LocalLoad(own_in_flight, max_in_flight, 0.0)
    if not snapshot.healthy:
        return LocalLoad(own_in_flight, max_in_flight, 0.0, down=f"vllm is not healthy: {snapshot.error}")
    in_flight = max(own_in_flight, snapshot.running + snapshot.waiting)
    est_wait = snapshot.waiting / max(snapshot.running, 1) * avg_request_s if snapshot.waiting else 0.0
    return LocalLoad(in_flight, max_in_flight, est_wait, saturated=_saturation(snapshot, max_waiting, kv_cache_full))


def _saturation(snapshot: VllmSnapshot, max_waiting: int, kv_cache_full: float) -> str:
    if snapshot.waiting >= max_waiting:
        return f"vllm has {snapshot.waiting} requests waiting, the limit is {max_waiting}"
    if snapshot.kv_cache_usage >= kv_cache_full:
        return f"vllm's KV cache is {snapshot.kv_cache_usage:.0%} used, the limit is {kv_cache_full:.0%}"
    return ""
