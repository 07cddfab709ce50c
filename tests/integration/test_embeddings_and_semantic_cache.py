"""A gateway process with all-MiniLM-L6-v2 from its wheel: /v1/embeddings through the openai SDK, and the
semantic cache through both doors (echo backend: each answer repeats its prompt, so a hit is visible)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import grpc
import openai
import pytest

from gateway.config import SemanticCacheConfig
from gateway.routing.cache_policy import CachePolicy
from gateway.routing.semantic_cache import Probe, SemanticCache, SemanticSettings, normalise
from gateway.routing.semantic_guard import facts
from gateway.state.cache.vector_index import VectorIndex
from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.gateway_process import ROOT, GatewayProcess, start_gateway

PAIRS = ROOT / "tests" / "data" / "semantic_pairs.jsonl"

CONFIG = """
state_dir = "{state}"

[local]
backend = "echo"

[embeddings]
enabled = true

[cache.semantic]
enabled = true

[tasks.signal]
semantic_cache = true

[tasks.plain]
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir: Path = tmp_path_factory.mktemp("embeddings")
    process = start_gateway(CONFIG.format(state=workdir / "state"), workdir)
    yield process
    assert process.stop() == 0


ON = {"x-gateway-semantic-cache": "on"}
OFF = {"x-gateway-semantic-cache": "off"}


def sdk(gateway: GatewayProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.http_url}/v1", api_key="unused", max_retries=0)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_the_openai_sdk_embeds_strings_and_lists(gateway: GatewayProcess) -> None:
    client = sdk(gateway)
    texts = ["Will BTC close above 60k today?", "Is BTC going to close above 60k today?", "Summarise the CPI print."]
    reply = await client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # the SDK asks for base64
    vectors = [d.embedding for d in reply.data]
    assert [d.index for d in reply.data] == [0, 1, 2] and all(len(v) == 384 for v in vectors)
    assert all(math.isclose(cosine(v, v), 1.0, abs_tol=1e-4) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > 0.9 > cosine(vectors[0], vectors[2])
    assert reply.model == "all-MiniLM-L6-v2" and reply.usage.prompt_tokens == reply.usage.total_tokens > 0

    single = await client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="float")
    assert single.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)
    raw = await client.embeddings.with_raw_response.create(
        model="all-MiniLM-L6-v2", input=texts[0], encoding_format="base64"
    )
    packed = raw.http_response.json()["data"][0]["embedding"]
    assert list(struct.unpack("<384f", base64.b64decode(packed))) == pytest.approx(vectors[0], abs=1e-6)
    assert "all-MiniLM-L6-v2" in [m.id async for m in client.models.list()]


async def test_bad_embedding_requests_are_400s_naming_the_field(gateway: GatewayProcess) -> None:
    client = sdk(gateway)
    with pytest.raises(openai.BadRequestError, match="token-id"):
        await client.embeddings.create(model="all-MiniLM-L6-v2", input=[[101, 2023, 102]])
    with pytest.raises(openai.BadRequestError, match="384"):
        await client.embeddings.create(model="all-MiniLM-L6-v2", input="x", dimensions=256)


async def test_a_paraphrase_is_answered_from_the_cache_and_above_never_for_below(gateway: GatewayProcess) -> None:
    client = sdk(gateway)

    async def ask(text: str, task: str = "signal", **headers: str) -> tuple[str, str]:
        reply = await client.chat.completions.with_raw_response.create(
            model="",
            messages=[{"role": "user", "content": text}],
            max_tokens=16,
            extra_headers={"x-gateway-task": task, **headers},
        )
        body = reply.parse()
        return body.choices[0].message.content or "", reply.headers.get("x-gateway-tier", "")

    first, tier = await ask("Will BTC close above 60k today?")
    assert tier == "local"
    again, tier = await ask("Is BTC going to close above 60k today?")
    assert (again, tier) == (first, "cache")  # the echo of the first prompt: the cached answer
    below, tier = await ask("Is BTC going to close below 60k today?")
    assert tier == "local" and "below" in below
    _, tier = await ask("Is BTC going to close above 60k today?", **OFF)
    assert tier == "local"  # a semantic hit stores nothing under its own prompt: opted out, it is a miss

    await ask("Will ETH trade above 3,000 this week?", task="plain")
    _, tier = await ask("Is ETH going to trade above 3,000 this week?", task="plain")
    assert tier == "local"  # the task did not opt in
    await ask("Will SOL trade above 150 next week?", task="plain", **ON)
    _, tier = await ask("Is SOL going to trade above 150 next week?", task="plain", **ON)
    assert tier == "cache"  # the request opted in


async def test_grpc_field_16_opts_a_request_out(gateway: GatewayProcess) -> None:
    def generate(text: str, semantic: bool | None) -> pb.GenerateResponse:
        request = pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content=text)], task="signal", max_tokens=16)
        if semantic is not None:
            request.semantic_cache = semantic
        with grpc.insecure_channel(gateway.target) as channel:
            reply: pb.GenerateResponse = pb_grpc.InferenceGatewayStub(channel).Generate(request, timeout=30)
        return reply

    first = await asyncio.to_thread(generate, "Should I buy SOL on Friday?", None)
    assert first.tier == pb.TIER_LOCAL
    off = await asyncio.to_thread(generate, "Is it a good idea to buy SOL on Friday?", False)
    assert off.tier == pb.TIER_LOCAL
    on = await asyncio.to_thread(generate, "Would it be a good idea to buy SOL on Friday?", None)
    assert on.tier == pb.TIER_CACHE and on.text == first.text


async def test_no_labelled_near_miss_is_a_hit_with_the_real_model_at_the_default_threshold() -> None:
    """Every pair through SemanticCache as the gateway builds it: the first prompt indexed, the second looked up
    (each pair in a scope of its own)."""
    from local_models.minilm import MiniLMEmbedder, MiniLMSettings, packaged_model_dir

    rows = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = sorted({normalise(row[side]) for row in rows for side in ("a", "b")})
    embedder = MiniLMEmbedder(MiniLMSettings(packaged_model_dir()))
    try:
        embedded = await asyncio.gather(*(embedder.embed(texts[i : i + 64]) for i in range(0, len(texts), 64)))
    finally:
        await embedder.aclose()
    vectors = dict(zip(texts, (v for batch in embedded for v in batch.vectors), strict=True))
    index = VectorIndex(dimensions=384, max_entries=len(rows))
    semantic = SemanticCache(embedder, index, CachePolicy(), SemanticSettings(SemanticCacheConfig().threshold))
    false_hits, hits = [], 0
    for i, row in enumerate(rows):
        first, second = normalise(row["a"]), normalise(row["b"])
        await semantic.remember(Probe(f"pair-{i}", first, vectors[first], facts(first)), f"k{i}")
        matched = bool(semantic.matches(Probe(f"pair-{i}", second, vectors[second], facts(second))))
        if row["label"] == "miss" and matched:
            false_hits.append((row["a"], row["b"]))
        hits += row["label"] == "hit" and matched
    assert false_hits == []
    assert hits > sum(row["label"] == "hit" for row in rows) // 2  # most paraphrases hit (the benchmark: the rate)
