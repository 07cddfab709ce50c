"""The Responses API (POST /v1/responses) end to end: the official `openai` SDK's `client.responses` -> a gateway
process (echo backend) -> the OpenAI stand-in. Free text is answered locally by echo; a structured answer
(`text.format`) escalates, since echo cannot constrain its decoding, and the stand-in must be sent the schema."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel

from tests.fakes.base import FakeProviderServer, Reply
from tests.fakes.providers import TEST_KEYS, base_url, running
from tests.gateway_process import GatewayProcess, start_gateway

QUESTION = "BTC fell 3% today: signal?"
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
AS_FORMAT: Any = {"format": {"type": "json_schema", "name": "trade", "schema": SCHEMA, "strict": True}}


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

[models.aliases]
"gpt-4o-mini" = ""  # local first

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


def sdk(process: GatewayProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{process.http_url}/v1", api_key="unused", max_retries=0)


async def test_plain_and_streamed_responses_from_the_local_tier(
    gateway: tuple[GatewayProcess, FakeProviderServer],
) -> None:
    process, fake = gateway
    client = sdk(process)
    try:
        plain = await client.responses.create(
            model="gpt-4o-mini", input=QUESTION, instructions="Answer briefly.", max_output_tokens=32
        )
        assert plain.output_text == QUESTION  # echo answers with the last message
        assert (plain.status, plain.instructions, plain.max_output_tokens) == ("completed", "Answer briefly.", 32)
        gateway_fields: dict[str, Any] = plain.gateway  # type: ignore[attr-defined]
        assert (gateway_fields["tier"], gateway_fields["confidence"]) == ("local", 1.0)
        assert plain.usage is not None and plain.usage.output_tokens > 0

        stream = await client.responses.create(
            model="gpt-4o-mini",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "the trend is up"}]}],
            stream=True,
        )
        kinds: list[str] = []
        deltas: list[str] = []
        async for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            if event.type == "response.completed":
                completed = event.response
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        assert len(deltas) > 1 and "".join(deltas) == "the trend is up"
        assert completed.output_text == "the trend is up"
        assert completed.gateway["tier"] == "local"  # type: ignore[attr-defined]
        assert not fake.seen  # nothing escalated
    finally:
        await client.close()


async def test_structured_output_through_text_format(gateway: tuple[GatewayProcess, FakeProviderServer]) -> None:
    process, fake = gateway
    client = sdk(process)
    try:
        answer = await client.responses.create(model="gpt-4o-mini", input=QUESTION, text=AS_FORMAT)
        assert json.loads(answer.output_text) == json.loads(ANSWER)
        sent = fake.seen[-1].body["response_format"]  # the provider's own structured-output API, with the schema
        assert sent == {"type": "json_schema", "json_schema": {"name": "trade", "schema": SCHEMA, "strict": True}}
        assert answer.gateway["tier"] == "remote"  # type: ignore[attr-defined]
        assert answer.gateway["attempts"][0]["error"] == "echo cannot constrain its answer to JSON"  # type: ignore[attr-defined]
        assert answer.text is not None and answer.text.format is not None
        assert answer.text.format.type == "json_schema"

        parsed = await client.responses.parse(
            model="gpt-4o-mini", input=QUESTION, text_format=Trade, extra_body={"bypass_cache": True}
        )
        assert parsed.output_parsed == Trade(signal="sell", size=0.2, reason="momentum fades")
        assert fake.seen[-1].body["response_format"]["json_schema"]["name"] == "Trade"

        async with client.responses.stream(
            model="gpt-4o-mini", input=QUESTION, text_format=Trade, extra_body={"bypass_cache": True}
        ) as stream:
            async for _ in stream:
                pass
            final = await stream.get_final_response()
        assert final.output_parsed == Trade(signal="sell", size=0.2, reason="momentum fades")

        fake.reply = Reply('{"signal": "short", "size": 0.2, "reason": "x"}')
        with pytest.raises(openai.APIStatusError) as refused:
            await client.responses.create(
                model="gpt-4o-mini", input=QUESTION, text=AS_FORMAT, extra_body={"bypass_cache": True}
            )
        assert refused.value.status_code == 503
        assert "does not validate against the schema" in refused.value.message
    finally:
        await client.close()


async def test_refusals_are_openais_error_object(gateway: tuple[GatewayProcess, FakeProviderServer]) -> None:
    process, _ = gateway
    client = sdk(process)
    try:
        with pytest.raises(openai.BadRequestError) as local_only:
            await client.responses.create(
                model="gpt-4o-mini", input=QUESTION, text=AS_FORMAT, extra_body={"privacy": "local_only"}
            )
        assert local_only.value.param == "response_format"  # type: ignore[attr-defined]
        assert "cannot constrain its answer to JSON" in local_only.value.message
        with pytest.raises(openai.BadRequestError) as stored:
            await client.responses.create(model="gpt-4o-mini", input=QUESTION, previous_response_id="resp_1")
        assert stored.value.param == "previous_response_id"  # type: ignore[attr-defined]
        with pytest.raises(openai.BadRequestError) as tools:
            await client.responses.create(
                model="gpt-4o-mini",
                input=QUESTION,
                tools=[{"type": "function", "name": "quote", "parameters": {"type": "object"}, "strict": False}],
            )
        assert tools.value.param == "tools"  # type: ignore[attr-defined]
        with pytest.raises(openai.BadRequestError) as unknown_model:
            await client.responses.create(model="gpt-5", input=QUESTION)
        assert "gpt-4o-mini" in unknown_model.value.message  # the known names are listed
    finally:
        await client.close()
