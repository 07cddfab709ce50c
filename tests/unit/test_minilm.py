"""all-MiniLM-L6-v2 from its wheel: unit vectors in input order, and concurrent callers sharing forward passes."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest

from local_models.minilm import DIMENSIONS, MiniLMEmbedder, MiniLMSettings, packaged_model_dir


class CountingEmbedder(MiniLMEmbedder):
    """Records the size of each forward pass."""

    def __init__(self, settings: MiniLMSettings) -> None:
        super().__init__(settings)
        self.passes: list[int] = []

    def _forward(self, texts: list[str]) -> tuple[list[tuple[float, ...]], list[int]]:
        self.passes.append(len(texts))
        return super()._forward(texts)


@pytest.fixture
async def embedder() -> AsyncIterator[CountingEmbedder]:
    model = CountingEmbedder(MiniLMSettings(packaged_model_dir(), max_batch=4))
    await model.warm()
    yield model
    await model.aclose()


def dot(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_vectors_are_unit_length_in_input_order(embedder: CountingEmbedder) -> None:
    texts = ["Will BTC close above 60k today?", "Summarise the CPI print.", "Will BTC close above 60k today?"]
    embedded = await embedder.embed(texts)
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.dimensions == DIMENSIONS
    assert [len(v) for v in embedded.vectors] == [DIMENSIONS] * 3
    assert all(math.isclose(dot(v, v), 1.0, abs_tol=1e-5) for v in embedded.vectors)
    assert dot(embedded.vectors[0], embedded.vectors[2]) == pytest.approx(1.0, abs=1e-5)
    assert dot(embedded.vectors[0], embedded.vectors[1]) < 0.5
    assert embedded.tokens[0] == embedded.tokens[2] > 0


async def test_concurrent_requests_share_a_forward_pass_and_get_their_own_vectors(embedder: CountingEmbedder) -> None:
    alone = [(await embedder.embed([t])).vectors[0] for t in ("BTC up?", "ETH down?", "SOL flat?", "XRP?")]
    embedder.passes.clear()
    together = await asyncio.gather(
        embedder.embed(["BTC up?"]), embedder.embed(["ETH down?", "SOL flat?"]), embedder.embed(["XRP?"])
    )
    assert embedder.passes == [4]
    got = [v for result in together for v in result.vectors]
    assert all(dot(a, b) == pytest.approx(1.0, abs=1e-4) for a, b in zip(got, alone, strict=True))


async def test_a_request_over_max_batch_goes_in_passes_and_others_are_served_between_them(
    embedder: CountingEmbedder,
) -> None:
    big = asyncio.create_task(embedder.embed([f"ticker number {i}" for i in range(12)]))
    await asyncio.sleep(0)  # its first pass is queued and running
    small = asyncio.create_task(embedder.embed(["BTC above 60k?"]))
    embedded, alone = await big, await small
    assert embedder.passes == [4, 1, 4, 4]  # the lookup did not wait for all of the big request
    assert len(embedded.vectors) == 12 and len(alone.vectors) == 1
    last = (await embedder.embed(["ticker number 11"])).vectors[0]
    assert dot(embedded.vectors[11], last) == pytest.approx(1.0, abs=1e-4)


async def test_an_empty_request_is_refused(embedder: CountingEmbedder) -> None:
    with pytest.raises(ValueError, match="at least one text"):
        await embedder.embed([])
