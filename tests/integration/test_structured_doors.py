"""Structured answers through both doors of a gateway process: the official `openai` SDK's response_format
(json_schema, json_object, and `chat.completions.parse` with a pydantic model) and GenerateRequest's
response_format over gRPC. The echo backend cannot constrain its decoding, so these go to the OpenAI
stand-in, which must be sent the schema; an answer that does not validate never reaches the client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import grpc
import openai
import pytest
from pydantic import BaseModel

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import FakeProviderServer, Reply
from tests.fakes.providers import TEST_KEYS, base_url, running
from tests.gateway_process import GatewayProcess, start_gateway

USER = [{"role": "user", "content": "BTC fell 3% today: signal?"}]
ANSWER = '{"signal": "sell", "size": 0.2, "reason": "momentum fades"}'
SCHEMA = {
    "type": "object",
    "properties": {
        "signal": {"type": "string", "enum": ["buy", "sell", "hold"]},
        "size": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string"},
    },
    "required": ["signal", "size", "reason"],
    "additionalProperties": False,
}
AS_SCHEMA = {"type": "json_schema", "json_schema": {"name": "trade", "schema": SCHEMA, "strict": True}}


class Trade(BaseModel):
    signal: Literal["buy", "sell", "hold"]
    size: float
    reason: str


def config(openai_fake: FakeProviderServer, workdir: Path) -> str:
    return f"""
state_dir = "{workdir / "state"}"

[local]
backend = "echo"

[routing]
escalation_order = ["openai"]

[providers.openai]
model = "gpt-test"
base_url = "{base_url(openai_fake)}"
api_key_env = "OPENAI_API_KEY"
max_retries = 0
"""


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[GatewayProcess, FakeProviderServer]]:
    async with running("openai") as fakes:
        fake = fakes["openai"]
        fake.reply = Reply(ANSWER)
        process = await asyncio.to_thread(start_gateway, config(fake, tmp_path), tmp_path, env=TEST_KEYS)
        try:
            yield process, fake
        finally:
            process.stop()


async def test_openai_sdk_response_format_and_parse(gateway: tuple[GatewayProcess, FakeProviderServer]) -> None:
    process, fake = gateway
    client = openai.AsyncOpenAI(base_url=f"{process.http_url}/v1", api_key="unused", max_retries=0)
    try:
        answer = await client.chat.completions.create(model="", messages=USER, response_format=AS_SCHEMA)  # type: ignore[call-overload]
        assert json.loads(answer.choices[0].message.content or "") == json.loads(ANSWER)
        assert fake.seen[-1].body["response_format"] == AS_SCHEMA  # the provider's own structured-output API
        assert answer.gateway["tier"] == "remote"  # type: ignore[attr-defined]
        assert answer.gateway["escalation"] == "local_error"  # type: ignore[attr-defined]
        assert answer.gateway["attempts"][0]["error"] == "echo cannot constrain its answer to JSON"  # type: ignore[attr-defined]

        parsed = await client.chat.completions.parse(model="", messages=USER, response_format=Trade)  # type: ignore[arg-type]
        assert parsed.choices[0].message.parsed == Trade(signal="sell", size=0.2, reason="momentum fades")
        assert fake.seen[-1].body["response_format"]["json_schema"]["name"] == "Trade"

        whole = await client.chat.completions.create(
            model="",
            messages=USER,
            response_format={"type": "json_object"},
            stream=True,
            extra_body={"bypass_cache": True},
        )  # type: ignore[call-overload]
        pieces = [c.choices[0].delta.content async for c in whole if c.choices and c.choices[0].delta.content]
        assert pieces == [ANSWER]  # validated whole, then sent in one piece

        with pytest.raises(openai.BadRequestError) as local_only:
            await client.chat.completions.create(
                model="", messages=USER, response_format=AS_SCHEMA, extra_body={"privacy": "local_only"}
            )  # type: ignore[call-overload]
        assert local_only.value.param == "response_format"  # type: ignore[attr-defined]
        assert "cannot constrain its answer to JSON" in local_only.value.message
        bad_schema = {"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": "objekt"}}}
        with pytest.raises(openai.BadRequestError) as invalid:
            await client.chat.completions.create(model="", messages=USER, response_format=bad_schema)  # type: ignore[call-overload]
        assert invalid.value.param == "response_format"  # type: ignore[attr-defined]
        assert "not a valid JSON schema" in invalid.value.message

        fake.reply = Reply('{"signal": "short", "size": 0.2, "reason": "x"}')
        with pytest.raises(openai.APIStatusError) as refused:
            await client.chat.completions.create(
                model="", messages=USER, response_format=AS_SCHEMA, extra_body={"bypass_cache": True}
            )  # type: ignore[call-overload]
        assert refused.value.status_code == 503
        assert "does not validate against the schema" in refused.value.message
        assert "short" not in refused.value.message.replace("'short' is not one of", "")
    finally:
        await client.close()


async def test_grpc_response_format(gateway: tuple[GatewayProcess, FakeProviderServer]) -> None:
    process, fake = gateway
    async with grpc.aio.insecure_channel(process.target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        message = [pb.ChatMessage(role="user", content="BTC fell 3% today: signal?")]
        fmt = pb.ResponseFormat(json_schema=json.dumps(SCHEMA), name="trade", strict=True)
        answer = await stub.Generate(pb.GenerateRequest(messages=message, response_format=fmt))
        assert json.loads(answer.text) == json.loads(ANSWER)
        assert answer.tier == pb.TIER_REMOTE
        assert fake.seen[-1].body["response_format"] == AS_SCHEMA
        with pytest.raises(grpc.aio.AioRpcError) as local_only:
            await stub.Generate(
                pb.GenerateRequest(messages=message, response_format=fmt, privacy=pb.PRIVACY_LOCAL_ONLY)
            )
        assert local_only.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (local_only.value.details() or "").startswith("response_format: the local backend (echo) cannot")
