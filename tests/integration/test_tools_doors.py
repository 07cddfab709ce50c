"""Tools through both doors of a gateway process, to all five providers' wire stand-ins through their official
SDKs: the official `openai` SDK's `tools` (plain and stream=True: `delta.tool_calls` in OpenAI's format), a
conversation carrying tool calls and results, a rule matching on "has tools", the 400 where no tier may take
tools, and gRPC's GenerateRequest.tools with GenerateResponse.tool_calls and GenerateChunk.tool_calls. The echo
backend does not support tools, so every such request goes to the remote tier."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import FakeProviderServer, Reply
from tests.fakes.providers import KINDS, TEST_KEYS, base_url, running
from tests.gateway_process import GatewayProcess, start_gateway

PROVIDERS = ("openai", "anthropic", "google", "xai", "huggingface")
USER: Any = [{"role": "user", "content": "What is BTC at?"}]
PARAMETERS: dict[str, Any] = {"type": "object", "properties": {"symbol": {"type": "string"}}, "required": ["symbol"]}
TOOLS: Any = [
    {"type": "function", "function": {"name": "get_quote", "description": "Last price.", "parameters": PARAMETERS}}
]
ARGUMENTS = '{"symbol": "BTC"}'


def config(fakes: dict[str, FakeProviderServer], workdir: Path) -> str:
    providers = "".join(
        f"""
[providers.{name}]
model = "{KINDS[name].model}"
base_url = "{base_url(fakes[name])}"
api_key_env = "{KINDS[name].key_env}"
max_retries = 0
"""
        for name in PROVIDERS
    )
    return f"""
state_dir = "{workdir / "state"}"

[local]
backend = "echo"

[routing]
escalation_order = ["openai", "anthropic", "google", "xai", "huggingface"]

[[routing.rules]]
match_tools = true
match_tag = {{ desk = "claude" }}
prefer = ["anthropic"]
{providers}"""


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[GatewayProcess, dict[str, FakeProviderServer]]]:
    async with running(*PROVIDERS) as fakes:
        for fake in fakes.values():
            fake.reply = Reply("BTC is at 97000.", tool_calls=(("get_quote", ARGUMENTS),))
        process = await asyncio.to_thread(start_gateway, config(fakes, tmp_path), tmp_path, env=TEST_KEYS)
        try:
            yield process, fakes
        finally:
            process.stop()


def pin(name: str) -> str:
    return f"{name}/{KINDS[name].model}"


async def test_openai_sdk_tools_plain_and_streamed_through_every_provider(
    gateway: tuple[GatewayProcess, dict[str, FakeProviderServer]],
) -> None:
    process, fakes = gateway
    client = openai.AsyncOpenAI(base_url=f"{process.http_url}/v1", api_key="unused", max_retries=0)
    try:
        for name in PROVIDERS:
            answer = await client.chat.completions.create(model=pin(name), messages=USER, tools=TOOLS)
            choice = answer.choices[0]
            assert choice.finish_reason == "tool_calls", name
            assert choice.message.content is None
            (called,) = choice.message.tool_calls or []
            assert called.type == "function" and called.id
            assert (called.function.name, json.loads(called.function.arguments)) == ("get_quote", {"symbol": "BTC"})
            assert answer.gateway["provider"] == name  # type: ignore[attr-defined]

            stream = await client.chat.completions.create(model=pin(name), messages=USER, tools=TOOLS, stream=True)
            pieces: list[Any] = []
            finish = None
            async for chunk in stream:
                if chunk.choices:
                    pieces.extend(chunk.choices[0].delta.tool_calls or [])
                    finish = chunk.choices[0].finish_reason or finish
            assert finish == "tool_calls", name
            first, *rest = pieces
            assert (first.index, first.type, first.function.name, first.function.arguments) == (
                0,
                "function",
                "get_quote",
                "",
            ) or (first.index, first.type, first.function.name) == (0, "function", "get_quote")  # Gemini: whole
            assert first.id
            assert all(p.id is None and p.function.name is None for p in rest)
            assert json.loads("".join(p.function.arguments or "" for p in pieces)) == {"symbol": "BTC"}
            assert fakes[name].requests == 2
    finally:
        await client.close()


async def test_unpinned_tools_escalate_with_reason_tools_and_a_tool_conversation_round_trips(
    gateway: tuple[GatewayProcess, dict[str, FakeProviderServer]],
) -> None:
    process, fakes = gateway
    client = openai.AsyncOpenAI(base_url=f"{process.http_url}/v1", api_key="unused", max_retries=0)
    try:
        answer = await client.chat.completions.create(model="", messages=USER, tools=TOOLS, tool_choice="required")
        gateway_fields = answer.gateway  # type: ignore[attr-defined]
        assert (gateway_fields["tier"], gateway_fields["escalation"], gateway_fields["provider"]) == (
            "remote",
            "tools",
            "openai",
        )
        assert [a["provider"] for a in gateway_fields["attempts"]] == ["openai"]  # the local tier was not tried
        assert fakes["openai"].seen[-1].body["tool_choice"] == "required"
        called = (answer.choices[0].message.tool_calls or [])[0]

        again = await client.chat.completions.create(model="", messages=USER, tools=TOOLS, tool_choice="required")
        assert again.gateway["tier"] == "remote"  # type: ignore[attr-defined]  # a tool-call answer is not cached
        assert fakes["openai"].requests == 2

        conversation = [
            *USER,
            answer.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": called.id, "content": "97000"},
        ]
        final = await client.chat.completions.create(model="", messages=conversation)
        assert final.choices[0].message.content == "BTC is at 97000."
        assert final.choices[0].finish_reason == "stop"
        sent = fakes["openai"].seen[-1].body["messages"]
        assert sent[1]["tool_calls"][0]["id"] == called.id and sent[1]["content"] is None
        assert sent[2] == {"role": "tool", "content": "97000", "tool_call_id": called.id}

        claude = await client.chat.completions.create(
            model="", messages=USER, tools=TOOLS, extra_body={"tags": {"desk": "claude"}}
        )
        assert claude.gateway["provider"] == "anthropic"  # type: ignore[attr-defined]  # the rule matching tools
        plain = await client.chat.completions.create(model="", messages=USER, extra_body={"tags": {"desk": "claude"}})
        assert plain.gateway["tier"] == "local"  # type: ignore[attr-defined]  # no tools: the rule does not match
    finally:
        await client.close()


async def test_where_no_tier_may_take_tools_the_openai_door_answers_400(
    gateway: tuple[GatewayProcess, dict[str, FakeProviderServer]],
) -> None:
    process, _ = gateway
    client = openai.AsyncOpenAI(base_url=f"{process.http_url}/v1", api_key="unused", max_retries=0)
    try:
        with pytest.raises(openai.BadRequestError) as local_only:
            await client.chat.completions.create(
                model="", messages=USER, tools=TOOLS, extra_body={"privacy": "local_only"}
            )
        assert local_only.value.param == "tools"  # type: ignore[attr-defined]
        assert "does not support tools and the request is local-only" in local_only.value.message
        with pytest.raises(openai.BadRequestError) as legacy:
            await client.chat.completions.create(
                model="",
                messages=USER,
                functions=[{"name": "get_quote", "parameters": PARAMETERS}],
            )
        assert legacy.value.param == "functions"  # type: ignore[attr-defined]
        assert "`tools`" in legacy.value.message
        with pytest.raises(openai.BadRequestError) as unknown:
            await client.chat.completions.create(
                model="", messages=USER, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "x"}}
            )
        assert unknown.value.param == "tool_choice"  # type: ignore[attr-defined]
    finally:
        await client.close()


async def test_grpc_tools_calls_and_tool_call_deltas(
    gateway: tuple[GatewayProcess, dict[str, FakeProviderServer]],
) -> None:
    process, fakes = gateway
    tool = pb.Tool(name="get_quote", description="Last price.", parameters=json.dumps(PARAMETERS))
    message = [pb.ChatMessage(role="user", content="What is BTC at?")]
    async with grpc.aio.insecure_channel(process.target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        answer = await stub.Generate(
            pb.GenerateRequest(
                messages=message,
                tools=[tool],
                tool_choice=pb.ToolChoice(mode="function", name="get_quote", parallel_tool_calls=False),
                model=pin("anthropic"),
            )
        )
        assert answer.finish_reason == "tool_calls"
        assert [(c.name, json.loads(c.arguments)) for c in answer.tool_calls] == [("get_quote", {"symbol": "BTC"})]
        sent = fakes["anthropic"].seen[-1].body
        assert sent["tool_choice"] == {"type": "tool", "name": "get_quote", "disable_parallel_tool_use": True}

        chunks = [c async for c in stub.GenerateStream(pb.GenerateRequest(messages=message, tools=[tool]))]
        pieces = [p for c in chunks for p in c.tool_calls]
        assert pieces[0].name == "get_quote" and pieces[0].id
        assert json.loads("".join(p.arguments for p in pieces)) == {"symbol": "BTC"}
        final = chunks[-1].final
        assert final.escalation == pb.ESCALATION_TOOLS and final.tier == pb.TIER_REMOTE
        assert [c.name for c in final.tool_calls] == ["get_quote"]

        reply = [
            *message,
            pb.ChatMessage(role="assistant", tool_calls=[pb.ToolCall(id="c1", name="get_quote", arguments=ARGUMENTS)]),
            pb.ChatMessage(role="tool", tool_call_id="c1", content="97000"),
        ]
        final_answer = await stub.Generate(pb.GenerateRequest(messages=reply, model=pin("google")))
        assert final_answer.text == "BTC is at 97000."
        parts = fakes["google"].seen[-1].body["contents"][2]["parts"]
        assert parts[0]["functionResponse"]["name"] == "get_quote"  # found from the call it answers

        with pytest.raises(grpc.aio.AioRpcError) as local_only:
            await stub.Generate(pb.GenerateRequest(messages=message, tools=[tool], privacy=pb.PRIVACY_LOCAL_ONLY))
        assert local_only.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (local_only.value.details() or "").startswith("tools: the local backend does not support tools")
