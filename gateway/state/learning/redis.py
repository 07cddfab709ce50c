"""Training rows on Redis, shared by every gateway replica.

Layout (under the configured prefix):
  learn:tasks         set of the tasks that have rows
  learn:rows:<task>   sorted set, score = time, member = the row as JSON (it carries the request id, so
                      two rows never collapse into one)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway.state.learning.store import TaskRows, TrainingRow
from gateway.state.redis_client import key_join, unavailable_when_down

if TYPE_CHECKING:
    from redis.asyncio import Redis

WHAT = "training store (Redis)"


class RedisTrainingStore:
    def __init__(self, client: Redis, *, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._tasks = key_join(prefix, "learn", "tasks")

    def _rows_key(self, task: str) -> str:
        return key_join(self._prefix, "learn", "rows", task)

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
                    by_age, by_count = await pipe.execute()
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
            for name in tasks:
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.zcard(self._rows_key(name))
                    pipe.delete(self._rows_key(name))
                    pipe.srem(self._tasks, name)
                    count, _, _ = await pipe.execute()
                removed += int(count)
        return removed

    async def aclose(self) -> None:
        return None  # the client belongs to the shared state, which closes it

    async def _task_names(self) -> list[str]:
        with unavailable_when_down(WHAT):
            members = await self._client.smembers(self._tasks)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
