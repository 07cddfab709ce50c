"""The remote tier when shared state goes away between the reservation and the answer."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.core.errors import Unavailable
from gateway.remote.providers.registry import build_provider
from gateway.remote.tier import RemoteTier
from gateway.remote.types import ProviderSlot
from gateway.state.budget.ledger import Reservation, utc_day
from gateway.state.budget.memory import MemoryLedger
from tests.fakes.providers import TEST_KEYS, provider_config, running
from tests.unit.test_remote_tier import CALL, ESTIMATE


class LedgerLostAfterReserve(MemoryLedger):
    """Reserves, then cannot be reached (Redis stopped while the provider was answering)."""

    async def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        raise Unavailable("token ledger unreachable: Redis ConnectionError")


async def test_an_answer_whose_reconcile_cannot_be_written_is_still_returned() -> None:
    async with running("openai") as fakes:
        backend = build_provider("openai", provider_config("openai", fakes["openai"]), TEST_KEYS["OPENAI_API_KEY"])
        ledger = LedgerLostAfterReserve()
        tier = RemoteTier([ProviderSlot(backend, max_retries=0)], ledger)
        try:
            result = await tier.complete(CALL, order=("openai",), deadline=None)
        finally:
            await tier.aclose()
    assert result.completion.text == fakes["openai"].reply.text  # the provider was paid: its answer goes out
    assert [(a.provider, a.outcome) for a in result.attempts] == [("openai", "ok")]
    spend = (await ledger.usage(utc_day(datetime.now(UTC))))["openai"]
    assert (spend.tokens_used, spend.requests) == (ESTIMATE, 1)  # the estimate stays counted, to expire later
    assert await ledger.settle_expired(datetime.now(UTC)) == 1
