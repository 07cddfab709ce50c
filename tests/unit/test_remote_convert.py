"""The remote tier's usage rows at the gRPC edge."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.api.convert import provider_usage_to_proto
from gateway.remote.types import ProviderUsageRow


def test_provider_usage_rows_become_proto_messages() -> None:
    reset = datetime(2026, 11, 26, tzinfo=UTC)
    rows = [
        ProviderUsageRow("openai", 1200, 15000, 4, 13800, reset),
        ProviderUsageRow("huggingface", 0, 0, 0, None, reset),
    ]
    out = provider_usage_to_proto(rows)
    assert [(p.provider, p.tokens_used, p.token_budget, p.requests) for p in out] == [
        ("openai", 1200, 15000, 4),
        ("huggingface", 0, 0, 0),
    ]
