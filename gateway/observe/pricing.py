"""What an answer cost, and what the reference provider would have charged for the same tokens.

Prices are dollars per million tokens, from each provider's config
(price_in_per_mtok / price_out_per_mtok) or the [usage.prices] table. Local and
cached answers cost nothing; "saved" is the reference cost of every answer minus
what was spent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.core.contracts import Tier, Usage

PER_MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    in_per_mtok: float = 0.0
    out_per_mtok: float = 0.0

    def cost(self, usage: Usage) -> float:
        return (usage.prompt_tokens * self.in_per_mtok + usage.completion_tokens * self.out_per_mtok) / PER_MTOK


@dataclass(frozen=True, slots=True)
class PriceTable:
    prices: Mapping[str, Price] = field(default_factory=dict)
    reference: str = ""  # the provider every answer is compared against; empty = none

    def spent(self, tier: Tier, provider: str, usage: Usage) -> float:
        if tier is not Tier.REMOTE:
            return 0.0
        return self.prices.get(provider, Price()).cost(usage)

    def reference_cost(self, usage: Usage) -> float:
        return self.prices.get(self.reference, Price()).cost(usage)
