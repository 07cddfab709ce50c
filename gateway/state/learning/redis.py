"""Training rows on Redis, shared by every gateway replica.

Layout (under the configured prefix):
  learn:tasks         set of the tasks that have rows
  learn:rows:<task>   sorted set, score = time, member = the row as JSON (it carries the request id, so
                      two rows never collapse into one)
  learn:audits:<task> sorted set, score = time, member = "<threshold>:<agreed 0|1>:<unique id>"
  learn:thresholds    hash, task or task@version -> the threshold the live audit raised it to
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway.state.learning.store import AuditRecord, Tally, TaskRows, TrainingRow
from gateway.state.redis_client import key_join, unavailable_when_down

if TYPE_CHECKING:
    from redis.asyncio import Redis

WHAT = "training store (Redis)"


class RedisTrainingStore:
    def __init__(self, client: Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._tasks = key_join(prefix, "learn", "tasks")
        self._thresholds = key_join(prefix, "learn", "thresholds")

    def _rows_key(self, task: str) -> str:
        return key_join(self._prefix, "learn", "rows", task)

    def _audits_key(self, task: str) -> str:
        return key_join(self._prefix, "learn", "audits", task)

    async def add(self, rows: Sequence[TrainingRow]) -> None:
        if not rows:
            return
        with unavailable_when_down(WHAT):
            async with self._client.pipeline(transaction=True) as pipe:
                for row in rows:
                    pipe.sadd(self._tasks, row.task)
                    pipe.zadd(self._rows_key(row.task), {row.to_json(): row.ts})
                await pipe.execute()

    async def trim(self, *, max_rows: int, older_than: float) -> int:
        removed = 0
        with unavailable_when_down(WHAT):
            for task in await self._task_names():
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.zremrangebyscore(self._rows_key(task), "-inf", f"({older_than}")
                    pipe.zremrangebyrank(self._rows_key(task), 0, -(max_rows + 1))
                    pipe.zremrangebyscore(self._audits_key(task), "-inf", f"({older_than}")
                    by_age, by_count, _ = await pipe.execute()
                removed += int(by_age) + int(by_count)
        return removed

    async def status(self) -> list[TaskRows]:
        out = []
        for task in sorted(await self._task_names()):
            rows = await self.rows(task)
            if rows:
                labels = Counter(row.label for row in rows)
                out.append(TaskRows(task, len(rows), rows[0].ts, rows[-1].ts, dict(sorted(labels.items()))))
        return out

    async def rows(self, task: str) -> list[TrainingRow]:
        with unavailable_when_down(WHAT):
            raw = await self._client.zrange(self._rows_key(task), 0, -1)
        return [TrainingRow.from_json(member) for member in raw if isinstance(member, (bytes, str))]

    async def purge(self, task: str | None) -> int:
        tasks = [task] if task is not None else await self._task_names()
        removed = 0
        with unavailable_when_down(WHAT):
            scopes = [_text(s) for s in await self._client.hkeys(self._thresholds)]
            gone = [s for s in scopes if task is None or s == task or s.startswith(task + "@")]
            if gone:
                await self._client.hdel(self._thresholds, *gone)
            for name in tasks:
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.zcard(self._rows_key(name))
                    pipe.delete(self._rows_key(name), self._audits_key(name))
                    pipe.srem(self._tasks, name)
                    count, *_ = await pipe.execute()
                removed += int(count)
        return removed

    async def add_audits(self, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        with unavailable_when_down(WHAT):
            async with self._client.pipeline(transaction=True) as pipe:
                for r in records:
                    pipe.sadd(self._tasks, r.task)
                    pipe.zadd(self._audits_key(r.task), {f"{r.threshold!r}:{int(r.agreed)}:{uuid.uuid4().hex}": r.ts})
                await pipe.execute()

    async def tally(self, task: str, *, threshold: float, since: float) -> Tally:
        with unavailable_when_down(WHAT):
            members = await self._client.zrangebyscore(self._audits_key(task), since, "+inf")
        audited = agreed = 0
        for member in members:
            if not isinstance(member, (bytes, str)):
                continue
            at, ok, _ = _text(member).split(":")
            if float(at) == threshold:
                audited += 1
                agreed += ok == "1"
        return Tally(audited, agreed)

    async def thresholds(self) -> dict[str, float]:
        with unavailable_when_down(WHAT):
            raw = await self._client.hgetall(self._thresholds)
        return {_text(task): float(value) for task, value in raw.items()}

    async def set_threshold(self, scope: str, threshold: float) -> None:
        with unavailable_when_down(WHAT):
            await self._client.hset(self._thresholds, scope, repr(threshold))

    async def aclose(self) -> None:
        return None  # the client belongs to the shared state, which closes it

    async def _task_names(self) -> list[str]:
        with unavailable_when_down(WHAT):
            members = await self._client.smembers(self._tasks)
        return sorted(_text(m) for m in members)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
