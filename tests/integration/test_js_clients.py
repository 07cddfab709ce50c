"""Real JavaScript clients against a gateway process (echo backend, the OpenAI stand-in behind it): LangChain JS
(`@langchain/openai`) and the Vercel AI SDK (`ai` with `@ai-sdk/openai`), at the versions locked in
tests/node/package-lock.json. Each runs invoke (generate), stream and structured output; the AI SDK through its
default model `openai(model)`, which calls /v1/responses, and through `openai.chat(model)`. Free text is answered
by echo (the last message's words); a structured answer escalates, since echo cannot constrain its decoding, so
the stand-in must be sent the client's schema and its answer must validate before the client sees it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from typing import Any

from tests.fakes.base import FakeProviderServer
from tests.gateway_process import ROOT, GatewayProcess
from tests.integration import test_responses_api as responses_api
from tests.npm import npm_ci

NODE_DIR = ROOT / "tests" / "node"
TRADE = json.loads(responses_api.ANSWER)

gateway = responses_api.gateway  # the fixture: echo first, the OpenAI stand-in answering responses_api.ANSWER


async def run_node(script: str, process: GatewayProcess) -> dict[str, Any]:
    npm_ci(NODE_DIR)
    env = {**os.environ, "GATEWAY_BASE_URL": f"{process.http_url}/v1"}
    done = await asyncio.to_thread(
        subprocess.run, ["node", script], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen: dict[str, Any] = json.loads(done.stdout)
    return seen


def schemas_sent(fake: FakeProviderServer) -> list[dict[str, Any]]:
    """The JSON schemas the stand-in was sent in its own structured-output field (response_format)."""
    return [seen.body["response_format"]["json_schema"]["schema"] for seen in fake.seen]


def assert_trade_schema(schema: dict[str, Any]) -> None:
    assert schema["properties"]["signal"]["enum"] == ["buy", "sell", "hold"]
    assert set(schema["required"]) == {"signal", "size", "reason"}


async def test_langchain_js_invoke_stream_batch_and_structured_output(
    gateway: tuple[GatewayProcess, FakeProviderServer],
) -> None:
    process, fake = gateway
    seen = await run_node("langchain_client.mjs", process)
    assert seen["invoke"]["text"] == "langchain says the trend is up"
    assert seen["invoke"]["usage"]["output_tokens"] > 0
    assert seen["stream"]["text"] == "langchain streams the trend"
    assert seen["stream"]["chunks"] > 1
    assert seen["batch"] == ["first question", "second question"]
    assert seen["structured"] == TRADE
    responses = seen["responses"]
    assert responses["text"] == "langchain asks the responses api"
    assert responses["stream"] == "langchain streams the responses api"
    assert responses["structured"] == TRADE
    sent = schemas_sent(fake)
    assert len(sent) == 2  # only the structured calls escalated: one per API
    for schema in sent:
        assert_trade_schema(schema)


async def test_vercel_ai_sdk_default_responses_model_and_chat_model(
    gateway: tuple[GatewayProcess, FakeProviderServer],
) -> None:
    process, fake = gateway
    seen = await run_node("ai_sdk_client.mjs", process)
    for api in ("responses", "chat"):
        run = seen[api]
        assert run["generate"]["text"] == f"{api} says the trend is up"
        assert run["generate"]["finishReason"] == "stop"
        assert run["generate"]["usage"]["outputTokens"] > 0
        assert run["stream"]["text"] == f"{api} streams the trend"
        assert run["stream"]["pieces"] > 1
        assert run["structured"] == TRADE
        assert run["streamedStructured"] == TRADE
    prompts = [seen.body["messages"][-1]["content"] for seen in fake.seen]
    assert prompts == [
        "responses: BTC fell 3% today, signal?",
        "responses: ETH fell 5% today, signal?",
        "chat: BTC fell 3% today, signal?",
        "chat: ETH fell 5% today, signal?",
    ]
    for schema in schemas_sent(fake):
        assert_trade_schema(schema)
