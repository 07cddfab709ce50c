"""What an answer cost, and what the reference provider would have charged for the same tokens.

Prices are dollars per million tokens, from each provider's config
(price_in_per_mtok / price_out_per_mtok) or the [usage.prices] table. Local and
cached answers cost nothing; "saved" is the reference cost of every answer minus
what was spent.

Prompt tokens a provider read from its prompt cache, and those it wrote to it, are
billed at their own ratio of the input price (`cached_in_ratio`, `cache_write_ratio`).
The defaults per provider kind (CACHE_RATIOS) are the providers' published list
prices for their default models (docs/cost.md names the figures and their sources);
a provider's config overrides them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.core.contracts import Tier, Usage

PER_MTOK = 1_000_000

# kind -> (cache read, cache write), as fractions of the input price per token.
CACHE_RATIOS: Mapping[str, tuple[float, float]] = {
    "openai": (0.5, 1.0),  # gpt-4o-mini: $0.075 cached vs $0.15 input; writes are free
    "anthropic": (0.1, 1.25),  # cache reads 0.1x; 5-minute cache writes 1.25x the base input price
    "google": (0.1, 1.0),  # Gemini 2.5 Flash: $0.03 cached vs $0.30 input (implicit caching, no storage fee)
    "xai": (0.25, 1.0),  # grok-3-mini: $0.075 cached vs $0.30 input
    "huggingface": (1.0, 1.0),  # reports no cached tokens
}


@dataclass(frozen=True, slots=True)
class Price:
    in_per_mtok: float = 0.0
    out_per_mtok: float = 0.0
    cached_in_ratio: float = 1.0  # a prompt-cache read, as a fraction of in_per_mtok
    cache_write_ratio: float = 1.0  # a prompt-cache write, as a fraction of in_per_mtok

    def cost(self, usage: Usage) -> float:
        """`usage.prompt_tokens` includes the cached reads and writes: each is billed at its own rate."""
        cached, written = usage.cached_prompt_tokens, usage.cache_write_tokens
        fresh = max(usage.prompt_tokens - cached - written, 0)
        prompt = fresh + cached * self.cached_in_ratio + written * self.cache_write_ratio
        return (prompt * self.in_per_mtok + usage.completion_tokens * self.out_per_mtok) / PER_MTOK


def cache_ratios(kind: str, read: float | None = None, write: float | None = None) -> tuple[float, float]:
    """The (read, write) ratios for a provider of `kind`: the configured ones, else the kind's defaults."""
    default_read, default_write = CACHE_RATIOS.get(kind, (1.0, 1.0))
    return (default_read if read is None else read, default_write if write is None else write)


@dataclass(frozen=True, slots=True)
class PriceTable:
    prices: Mapping[str, Price] = field(default_factory=dict)
    reference: str = ""  # the provider every answer is compared against; empty = none

    def spent(self, tier: Tier, provider: str, usage: Usage) -> float:
        if tier is not Tier.REMOTE:
            return 0.0
        return self.prices.get(provider, Price()).cost(usage)

    def reference_cost(self, usage: Usage) -> float:
        """The reference provider's price for the same prompt and answer, without any cache discount: what the
        answer would have cost had it gone there uncached."""
        plain = Usage(usage.prompt_tokens, usage.completion_tokens)
        return self.prices.get(self.reference, Price()).cost(plain)
