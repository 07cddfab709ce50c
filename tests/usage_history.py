"""A past day of traffic, written into a gateway's own SQLite usage store and token ledger before it starts.

Deterministic (seeded by the day): busier in the afternoon (UTC), mostly local, some cache hits, escalations
for low confidence, capacity and rules, three clients and three tasks. Remote answers' tokens are also
spent in the ledger, as the remote tier would have.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.state.budget.sqlite import SqliteLedger
from gateway.state.usage.sqlite import SqliteUsageStore
from gateway.state.usage.store import UsageRecord

CLIENTS = ("desk-1", "desk-2", "risk-batch")
TASKS = ("trend", "sentiment", "")
PRICE_IN, PRICE_OUT = 2.5, 10.0  # the reference (and only) provider's prices per million tokens


def yesterday() -> str:
    """Yesterday's UTC date, YYYY-MM-DD: the past day the tests seed."""
    return (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


def history(day: str, provider: str = "openai") -> list[UsageRecord]:
    rng = random.Random(day)
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    records = []
    for minute in range(1440):
        busy = 1.0 + 5.0 * math.exp(-(((minute / 60) - 15.0) ** 2) / 8.0)  # a peak around 15:00 UTC
        for n in range(rng.randint(0, round(2 * busy))):
            records.append(_answer(rng, start + minute * 60 + rng.uniform(0, 59.9), f"{day}-{minute}-{n}", provider))
    return records


def _answer(rng: random.Random, ts: float, request_id: str, provider: str) -> UsageRecord:
    roll = rng.random()
    tokens_in, tokens_out = rng.randint(80, 400), rng.randint(1, 40)
    reference = (tokens_in * PRICE_IN + tokens_out * PRICE_OUT) / 1e6
    confidence: float | None = round(rng.uniform(0.72, 0.99), 3)
    tier, escalation = "local", "none"
    latency = rng.lognormvariate(math.log(40), 0.3)
    if roll < 0.15:
        tier, latency = "cache", rng.uniform(0.2, 1.0)
    elif roll < 0.30:
        tier, latency = "remote", rng.lognormvariate(math.log(600), 0.35)
        escalation = rng.choice(("low_confidence", "low_confidence", "local_capacity", "rule"))
        confidence = round(rng.uniform(0.3, 0.6), 3) if escalation == "low_confidence" else None
    return UsageRecord(
        ts=ts,
        request_id=request_id,
        client_id=rng.choice(CLIENTS),
        task=rng.choice(TASKS),
        tier=tier,
        provider=provider if tier == "remote" else "vllm",
        model="gpt-test" if tier == "remote" else "base",
        adapter="",
        prompt_tokens=tokens_in,
        completion_tokens=tokens_out,
        latency_ms=round(latency, 3),
        confidence=confidence,
        escalation=escalation,
        cost_usd=reference if tier == "remote" else 0.0,
        reference_cost_usd=reference,
        overhead_ms=round(rng.uniform(0.2, 0.6), 3),
    )


async def seed(workdir: Path, day: str, provider: str = "openai") -> list[UsageRecord]:
    """Write the day into <workdir>/usage.sqlite3 and spend its remote tokens in <workdir>/budget.sqlite3

    (the files tests/gateway_process.py points a gateway at)."""
    records = history(day, provider)
    usage = SqliteUsageStore(workdir / "usage.sqlite3")
    ledger = SqliteLedger(workdir / "budget.sqlite3")
    try:
        for i in range(0, len(records), 1000):
            await usage.add(records[i : i + 1000])
        for r in records:
            if r.tier == "remote":
                reservation = await ledger.reserve(provider, r.prompt_tokens + r.completion_tokens, day=day, limit=None)
                assert reservation is not None
                await ledger.reconcile(reservation, r.prompt_tokens + r.completion_tokens)
    finally:
        await usage.aclose()
        await ledger.aclose()
    return records
