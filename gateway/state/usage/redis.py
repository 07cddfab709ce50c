"""Usage records on Redis, shared by every gateway replica.

Layout (under the configured prefix):
  usage:records        sorted set, score = time, member = the record as JSON (recent requests, retention)
  usage:day:<day>      hash of counters: requests, tier:<t>, provider:<p>, escalation:<r>, tokens:<t>, cost, ref,
                       cached, cache_write (prompt-cache reads and writes)
  usage:latency:<day>  sorted set, score = latency in ms (exact percentiles by rank)
  usage:overhead:<day> sorted set, score = the gateway's own time in ms (same members)
Day keys expire after the retention period; records older than it are trimmed by `purge`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateway.state.redis_client import key_join
from gateway.state.usage.store import (
    PERCENTILES,
    DayRows,
    DaySummary,
    LatencySummary,
    UsageRecord,
    day_rows_from_records,
    percentile_name,
    rank_index,
    summarize,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

DAY_S = 86_400
RECENT_PAGE = 500
RECENT_SCAN = 20_000  # `recent` for one client looks no further back than this many records
FIELDS_PER_RECORD = 14

# ARGV: prefix, day_ttl_s, then per record: day, ts, json, tier, provider, escalation, tokens, cost, ref,
# latency_ms, latency member, overhead_ms, cached prompt tokens, cache-write tokens.
# Day keys are computed here (one Redis, not Cluster: see
# gateway/state/cache/redis.py).
_ADD = """
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
local days = {}
for i = 3, #ARGV, FIELDS do
  local day = ARGV[i]
  local counters = prefix .. 'usage:day:' .. day
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i + 2])
  redis.call('HINCRBY', counters, 'requests', 1)
  redis.call('HINCRBY', counters, 'tier:' .. ARGV[i + 3], 1)
  redis.call('HINCRBY', counters, 'provider:' .. ARGV[i + 4], 1)
  if ARGV[i + 5] ~= 'none' then redis.call('HINCRBY', counters, 'escalation:' .. ARGV[i + 5], 1) end
  redis.call('HINCRBY', counters, 'tokens:' .. ARGV[i + 3], ARGV[i + 6])
  redis.call('HINCRBYFLOAT', counters, 'cost', ARGV[i + 7])
  redis.call('HINCRBYFLOAT', counters, 'ref', ARGV[i + 8])
  redis.call('ZADD', prefix .. 'usage:latency:' .. day, ARGV[i + 9], ARGV[i + 10])
  redis.call('ZADD', prefix .. 'usage:overhead:' .. day, ARGV[i + 11], ARGV[i + 10])
  redis.call('HINCRBY', counters, 'cached', ARGV[i + 12])
  redis.call('HINCRBY', counters, 'cache_write', ARGV[i + 13])
  days[day] = true
end
for day, _ in pairs(days) do
  redis.call('EXPIRE', prefix .. 'usage:day:' .. day, ttl)
  redis.call('EXPIRE', prefix .. 'usage:latency:' .. day, ttl)
  redis.call('EXPIRE', prefix .. 'usage:overhead:' .. day, ttl)
end
return 1
""".replace("FIELDS", str(FIELDS_PER_RECORD))


class RedisUsageStore:
    def __init__(self, client: Redis, *, prefix: str, retention_days: int) -> None:
        self._client = client
        self._prefix = prefix
        self._records = key_join(prefix, "usage", "records")
        self._day_ttl_s = (retention_days + 1) * DAY_S
        self._add = client.register_script(_ADD)

    async def add(self, records: Sequence[UsageRecord]) -> None:
        """One script call per batch: the client sends one command and reads one reply."""
        if not records:
            return
        args: list[str | int | float] = [self._prefix, self._day_ttl_s]
        for r in records:
            args += [r.day, r.ts, r.to_json(), r.tier, r.provider, r.escalation]
            args += [r.prompt_tokens + r.completion_tokens, r.cost_usd, r.reference_cost_usd, r.latency_ms]
            args += [f"{r.ts!r}:{r.request_id}", r.overhead_ms, r.cached_prompt_tokens, r.cache_write_tokens]
        await self._add(keys=[self._records], args=args)

    async def summary(self, day: str, *, client: str = "") -> DaySummary:
        if client:  # per-caller figures come from the day's records themselves
            return summarize(day, [r for r in await self._day_records(day) if r.client_id == client])
        pipe = self._client.pipeline(transaction=False)
        pipe.hgetall(self._day_key(day))
        (raw,) = await pipe.execute()
        counters = {k.decode(): v.decode() for k, v in raw.items()}
        latency = await self._ranked(self._latency_key(day))
        overhead = await self._ranked(key_join(self._prefix, "usage", "overhead", day))

        def group(kind: str) -> dict[str, int]:
            head = kind + ":"
            return {k[len(head) :]: int(v) for k, v in counters.items() if k.startswith(head) and int(v)}

        return DaySummary(
            day=day,
            requests=int(counters.get("requests", 0)),
            requests_by_tier=group("tier"),
            requests_by_provider=group("provider"),
            escalations_by_reason=group("escalation"),
            tokens_by_tier=group("tokens"),
            latency=latency,
            overhead=overhead,
            cost_usd=float(counters.get("cost", 0.0)),
            reference_cost_usd=float(counters.get("ref", 0.0)),
            cached_prompt_tokens=int(counters.get("cached", 0)),
            cache_write_tokens=int(counters.get("cache_write", 0)),
        )

    async def recent(self, limit: int, *, client: str = "") -> list[UsageRecord]:
        if not client:
            raw = await self._client.zrevrange(self._records, 0, limit - 1)
            return [UsageRecord.from_json(item) for item in raw if isinstance(item, (bytes, str))]
        found: list[UsageRecord] = []
        for start in range(0, RECENT_SCAN, RECENT_PAGE):  # newest first, page by page, up to RECENT_SCAN records
            raw = await self._client.zrevrange(self._records, start, start + RECENT_PAGE - 1)
            page = [UsageRecord.from_json(item) for item in raw if isinstance(item, (bytes, str))]
            found += [r for r in page if r.client_id == client]
            if len(found) >= limit or len(raw) < RECENT_PAGE:
                break
        return found[:limit]

    async def day_rows(self, day: str) -> DayRows:
        """From the day's records (kept for the retention period), decoded off the event loop."""
        raw = await self._client.zrangebyscore(self._records, *self._day_range(day))
        return await asyncio.to_thread(_day_rows, day, raw)

    async def purge(self, before_ts: float) -> None:
        await self._client.zremrangebyscore(self._records, "-inf", f"({before_ts!r}")

    async def aclose(self) -> None:
        return None  # the client belongs to whoever opened it

    async def _day_records(self, day: str) -> list[UsageRecord]:
        raw = await self._client.zrangebyscore(self._records, *self._day_range(day))
        return [UsageRecord.from_json(item) for item in raw if isinstance(item, (bytes, str))]

    @staticmethod
    def _day_range(day: str) -> tuple[float, str]:
        """The scores of the day's records: [midnight, next midnight)."""
        start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
        return start, f"({start + DAY_S!r}"

    async def _ranked(self, key: str) -> LatencySummary:
        """Count, nearest-rank percentiles and maximum of one day's sorted set of milliseconds."""
        pipe = self._client.pipeline(transaction=True)
        pipe.zcard(key)
        pipe.zrange(key, -1, -1, withscores=True)
        count, top = await pipe.execute()
        count = int(count)
        if not count:
            return LatencySummary()
        pipe = self._client.pipeline(transaction=False)
        for p in PERCENTILES:
            index = rank_index(count, p)
            pipe.zrange(key, index, index, withscores=True)
        found = await pipe.execute()
        percentiles = {percentile_name(p): float(f[0][1]) for p, f in zip(PERCENTILES, found, strict=True)}
        return LatencySummary(count, percentiles, float(top[0][1]) if top else 0.0)

    def _day_key(self, day: str) -> str:
        return key_join(self._prefix, "usage", "day", day)

    def _latency_key(self, day: str) -> str:
        return key_join(self._prefix, "usage", "latency", day)


def _day_rows(day: str, raw: Sequence[object]) -> DayRows:
    return day_rows_from_records(day, [UsageRecord.from_json(item) for item in raw if isinstance(item, (bytes, str))])
