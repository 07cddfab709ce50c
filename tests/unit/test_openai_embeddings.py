"""POST /v1/embeddings on the OpenAI door, over a table embedder: OpenAI's shapes, and a 400 naming each bad field."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.api.openai_embeddings import EmbeddingRoutes
from gateway.api.openai_http import OpenAIRoutes
from gateway.core.contracts import ModelEntry, Tier
from gateway.core.embedding import Embeddings

Client = TestClient[web.Request, web.Application]


class Embedder:
    name = "all-MiniLM-L6-v2"
    dimensions = 384

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        vectors = tuple(tuple(float(len(t) + d) / 1000 for d in range(self.dimensions)) for t in texts)
        return Embeddings(vectors, tuple(len(t.split()) + 2 for t in texts))

    async def aclose(self) -> None:
        return None


class Answerer:
    def models(self) -> list[ModelEntry]:
        return [ModelEntry("smollm2", Tier.LOCAL, "transformers")]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    embeddings = EmbeddingRoutes(Embedder(), max_request_bytes=1 << 16)
    routes = OpenAIRoutes(Answerer(), default_max_tokens=16, max_request_bytes=1 << 16, embeddings=embeddings)  # type: ignore[arg-type]
    app = web.Application(client_max_size=1 << 16)
    app.router.add_routes(routes.routes())
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def post(client: Client, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    reply = await client.post("/v1/embeddings", json=body)
    return reply.status, await reply.json()


async def test_a_list_of_strings_is_embedded_in_order_with_usage(client: Client) -> None:
    status, body = await post(client, {"model": "all-MiniLM-L6-v2", "input": ["BTC up?", "ETH down today?"]})
    assert status == 200
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert body["data"][0]["object"] == "embedding" and len(body["data"][0]["embedding"]) == 384
    assert body["data"][1]["embedding"][0] == pytest.approx(len("ETH down today?") / 1000)
    assert body["usage"] == {"prompt_tokens": 4 + 5, "total_tokens": 9}


async def test_base64_is_little_endian_float32(client: Client) -> None:
    status, floats = await post(client, {"model": "all-MiniLM-L6-v2", "input": "BTC up?"})
    status, packed = await post(client, {"model": "all-MiniLM-L6-v2", "input": "BTC up?", "encoding_format": "base64"})
    assert status == 200
    decoded = struct.unpack("<384f", base64.b64decode(packed["data"][0]["embedding"]))
    assert decoded == pytest.approx(floats["data"][0]["embedding"], rel=1e-6)


async def test_dimensions_may_only_name_the_models_own(client: Client) -> None:
    status, _ = await post(client, {"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 384})
    assert status == 200
    status, body = await post(client, {"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 256})
    assert status == 400 and body["error"]["param"] == "dimensions" and "384" in body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"model": "all-MiniLM-L6-v2", "input": [101, 2023]}, "input", "token-id"),
        ({"model": "all-MiniLM-L6-v2", "input": [[101, 2023]]}, "input", "token-id"),
        ({"model": "all-MiniLM-L6-v2", "input": []}, "input", "non-empty"),
        ({"model": "all-MiniLM-L6-v2", "input": ["ok", ""]}, "input[1]", "non-empty"),
        ({"model": "text-embedding-3-small", "input": "x"}, "model", "all-MiniLM-L6-v2"),
        ({"model": "all-MiniLM-L6-v2", "input": "x", "encoding_format": "int8"}, "encoding_format", "base64"),
        ({"model": "all-MiniLM-L6-v2", "input": "x", "truncate": True}, "truncate", "unknown parameter"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(client: Client, body: dict[str, Any], param: str, says: str) -> None:
    status, reply = await post(client, body)
    assert status == 400
    assert reply["error"]["param"] == param and says in reply["error"]["message"]


async def test_the_embedding_model_is_listed_and_named_in_the_404(client: Client) -> None:
    listed = await (await client.get("/v1/models")).json()
    assert [m["id"] for m in listed["data"]] == ["smollm2", "all-MiniLM-L6-v2"]
    assert (await client.get("/v1/models/all-MiniLM-L6-v2")).status == 200
    missing = await client.post("/v1/completions", json={})
    assert missing.status == 404 and "POST /v1/embeddings" in (await missing.json())["error"]["message"]
