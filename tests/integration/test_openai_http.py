"""The OpenAI-compatible HTTP door end to end: the official `openai` SDKs (Python, and npm under Node)
-> a gateway process (echo backend) -> the OpenAI stand-in, through the same router as gRPC."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import openai
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import FakeProviderServer
from tests.fakes.providers import TEST_KEYS, base_url, running
from tests.gateway_process import ROOT, GatewayProcess, keys_cli, keys_file, start_gateway
from tests.waiting import wait_until

NODE_DIR = ROOT / "tests" / "node"
USER = [{"role": "user", "content": "the trend is up"}]


def config(openai_fake: FakeProviderServer, workdir: Path, *, echo_delay_ms: float = 0.0) -> str:
    """Echo backend, the OpenAI stand-in behind a rule, state (keys included) in this test's folder."""
    return f"""
state_dir = "{workdir / "state"}"

[server]
max_request_bytes = 65536

[local]
backend = "echo"

[local.echo]
delay_ms = {echo_delay_ms}
report_delay = false  # no finish estimate: a request is admitted and its deadline passes mid-work

[routing]
escalation_order = ["openai"]

[[routing.rules]]
match_task = "detailed_analysis"
escalate = true

[tasks.detailed_analysis]

[models.aliases]
"gpt-4o-mini" = ""  # local first
"gpt-4o" = "openai/gpt-test"  # a pin

[providers.openai]
model = "gpt-test"
base_url = "{base_url(openai_fake)}"
api_key_env = "OPENAI_API_KEY"
daily_token_budget = 15000
max_retries = 0
"""


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, FakeProviderServer]]:
    async with running("openai") as started:
        yield started


async def start(fakes: dict[str, FakeProviderServer], workdir: Path, **options: float) -> GatewayProcess:
    return await asyncio.to_thread(start_gateway, config(fakes["openai"], workdir, **options), workdir, env=TEST_KEYS)


def sdk(gateway: GatewayProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.http_url}/v1", api_key="unused", max_retries=0)


async def test_python_sdk_plain_stream_escalation_cache_budget_and_usage(
    fakes: dict[str, FakeProviderServer], tmp_path: Path
) -> None:
    gateway = await start(fakes, tmp_path)
    try:
        client = sdk(gateway)

        # Local-first: the echo backend answers, with its confidence.
        raw = await client.chat.completions.with_raw_response.create(model="", messages=USER, max_tokens=16)  # type: ignore[arg-type]
        local = raw.parse()
        assert local.choices[0].message.content == "the trend is up"
        assert (raw.headers["x-gateway-tier"], raw.headers["x-gateway-provider"]) == ("local", "echo")
        assert raw.headers["x-gateway-confidence"] == "1.0000"
        assert local.gateway["escalation"] == "none"  # type: ignore[attr-defined]

        # A rule escalates the task (sent through extra_body) to the OpenAI stand-in.
        raw = await client.chat.completions.with_raw_response.create(
            model="",
            messages=USER,
            max_tokens=16,
            extra_body={"task": "detailed_analysis"},  # type: ignore[arg-type]
        )
        remote = raw.parse()
        assert remote.choices[0].message.content == fakes["openai"].reply.text
        assert remote.model == "gpt-test"
        assert (raw.headers["x-gateway-tier"], raw.headers["x-gateway-escalation"]) == ("remote", "rule")
        assert raw.headers["x-gateway-attempts"] == "openai:ok"
        assert [a["provider"] for a in remote.gateway["attempts"]] == ["openai"]  # type: ignore[attr-defined]
        assert fakes["openai"].requests == 1

        # The same request again: the response cache answers, the provider is not called.
        again = await client.chat.completions.create(
            model="",
            messages=USER,
            max_tokens=16,
            extra_body={"task": "detailed_analysis"},  # type: ignore[arg-type]
        )
        assert again.gateway["tier"] == "cache"  # type: ignore[attr-defined]
        assert fakes["openai"].requests == 1

        # privacy as a header keeps the escalating task on the box.
        kept = await client.chat.completions.create(
            model="",
            messages=USER,  # type: ignore[arg-type]
            extra_body={"task": "detailed_analysis"},
            extra_headers={"x-gateway-privacy": "local_only"},
            temperature=0.5,
        )
        assert kept.gateway["tier"] == "local"  # type: ignore[attr-defined]

        # Streamed: text deltas, then usage and the gateway object on the last chunk.
        stream = await client.chat.completions.create(
            model="",
            messages=USER,  # type: ignore[arg-type]
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"task": "detailed_analysis", "bypass_cache": True},
        )
        chunks = [chunk async for chunk in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == fakes["openai"].reply.text
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        assert chunks[-1].gateway["tier"] == "remote"  # type: ignore[attr-defined]
        assert fakes["openai"].requests == 2

        # A pin whose provider budget cannot cover the request: 429 with Retry-After until the reset.
        with pytest.raises(openai.RateLimitError) as spent:
            await client.chat.completions.create(model="openai/gpt-test", messages=USER, max_tokens=20000)  # type: ignore[arg-type]
        assert 0 < int(spent.value.response.headers["retry-after"]) <= 86_400
        assert "budget" in spent.value.message

        # Unsupported parameters are refused, naming them.
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model="", messages=USER, n=2)  # type: ignore[arg-type]
        assert refused.value.param == "n"  # type: ignore[attr-defined]
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="",
                messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}],
            )
        assert refused.value.param == "messages[0].content[0].type"  # type: ignore[attr-defined]

        # A /v1 path the gateway does not serve: OpenAI's error object, which the SDK raises as NotFoundError.
        with pytest.raises(openai.NotFoundError) as unserved:
            await client.embeddings.create(model="", input="the trend is up")
        assert unserved.value.code == "not_found"
        assert "/v1/embeddings" in unserved.value.message

        # The models are gRPC ListModels' (local model, adapters, provider pins), and the HTTP
        # door's answers count in GetUsage like gRPC's.
        models = [m.id async for m in client.models.list()]
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            stub = pb_grpc.InferenceGatewayStub(channel)
            listed = await stub.ListModels(pb.ListModelsRequest())
            usage = await stub.GetUsage(pb.GetUsageRequest())
        assert models == [m.name for m in listed.models]
        assert models[0] == "echo"
        assert "openai/gpt-test" in models
        assert dict(usage.requests_by_tier) == {"local": 2, "remote": 2, "cache": 1}
        assert dict(usage.escalations_by_reason)["rule"] >= 2

        # Model names clients already send: [models] aliases map them to local first or to a pin.
        assert {"gpt-4o-mini", "gpt-4o"} <= set(models)
        aliased = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, max_tokens=16)  # type: ignore[arg-type]
        # ... the same decision as model "": the first local answer, from the response cache.
        assert (aliased.gateway["tier"], aliased.gateway["provider"]) == ("cache", "echo")  # type: ignore[attr-defined]
        aliased = await client.chat.completions.create(model="gpt-4o", messages=USER, max_tokens=16)  # type: ignore[arg-type]
        assert (aliased.gateway["tier"], aliased.model) == ("remote", "gpt-test")  # type: ignore[attr-defined]
        with pytest.raises(openai.BadRequestError) as unknown:
            await client.chat.completions.create(model="gpt-5", messages=USER)  # type: ignore[arg-type]
        assert unknown.value.param == "model"  # type: ignore[attr-defined]
        assert "gpt-4o-mini (alias)" in unknown.value.message

        # Stop sequences on both doors: the answer ends before the first, locally and at a provider.
        local_stop = await client.chat.completions.create(model="", messages=USER, max_tokens=16, stop=[" is", "\n"])  # type: ignore[call-overload]
        assert (local_stop.choices[0].message.content, local_stop.choices[0].finish_reason) == ("the trend", "stop")
        remote_stop = await client.chat.completions.create(model="gpt-4o", messages=USER, max_tokens=16, stop=" up")  # type: ignore[arg-type]
        assert remote_stop.choices[0].message.content == "The trend is"
        assert fakes["openai"].seen[-1].body["stop"] == [" up"]
        pieces = await client.chat.completions.create(
            model="", messages=USER, max_tokens=16, stop=" is", stream=True, extra_body={"bypass_cache": True}
        )  # type: ignore[call-overload]
        assert "".join([c.choices[0].delta.content or "" async for c in pieces if c.choices]) == "the trend"
        with pytest.raises(openai.BadRequestError) as empty_stop:
            await client.chat.completions.create(model="", messages=USER, stop=["END", ""])  # type: ignore[arg-type]
        assert empty_stop.value.param == "stop"  # type: ignore[attr-defined]
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            stub = pb_grpc.InferenceGatewayStub(channel)
            over_grpc = await stub.Generate(
                pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content="the trend is up")], stop=[" is"])
            )
            with pytest.raises(grpc.aio.AioRpcError) as too_many:
                await stub.Generate(
                    pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content="x")], stop=list("abcde"))
                )
        assert over_grpc.text == "the trend"
        assert too_many.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "stop: 5 stop sequences" in (too_many.value.details() or "")

        # Token logprobs where the answering tier has them; the confidence stays in `gateway`.
        local_lp = await client.chat.completions.create(model="", messages=USER, max_tokens=16, logprobs=True)  # type: ignore[arg-type]
        assert local_lp.gateway["tier"] == "local"  # type: ignore[attr-defined]  # asked for logprobs: not the cache
        assert local_lp.choices[0].logprobs is not None and local_lp.choices[0].logprobs.content is not None
        assert [t.token for t in local_lp.choices[0].logprobs.content] == ["the", "trend", "is", "up"]
        remote_lp = await client.chat.completions.create(
            model="gpt-4o", messages=USER, max_tokens=16, logprobs=True, top_logprobs=2
        )  # type: ignore[call-overload]
        content = remote_lp.choices[0].logprobs.content
        assert [t.token for t in content] == ["The ", "trend ", "is ", "up"]
        assert all(len(t.top_logprobs) == 2 for t in content) and content[0].logprob < 0
        assert remote_lp.gateway["confidence"] is None  # type: ignore[attr-defined]
        streamed_lp = await client.chat.completions.create(
            model="gpt-4o", messages=USER, max_tokens=16, logprobs=True, top_logprobs=1, stream=True
        )  # type: ignore[call-overload]
        tokens = [
            t.token
            async for c in streamed_lp
            if c.choices and c.choices[0].logprobs
            for t in c.choices[0].logprobs.content or []
        ]
        assert tokens == ["The ", "trend ", "is ", "up"]
        plain = await client.chat.completions.create(model="gpt-4o", messages=USER, max_tokens=16)  # type: ignore[arg-type]
        assert plain.choices[0].logprobs is None
        with pytest.raises(openai.BadRequestError) as too_wide:
            await client.chat.completions.create(model="", messages=USER, logprobs=True, top_logprobs=21)  # type: ignore[arg-type]
        assert too_wide.value.param == "top_logprobs"  # type: ignore[attr-defined]
        await client.close()
    finally:
        gateway.stop()


async def test_deadline_and_disconnect_cancel_the_work(fakes: dict[str, FakeProviderServer], tmp_path: Path) -> None:
    # 600 s of echo work per request: only a cancellation brings the in-flight count back to 0 in time.
    gateway = await start(fakes, tmp_path, echo_delay_ms=600_000)
    try:
        client = sdk(gateway)
        with pytest.raises(openai.InternalServerError) as late:
            await client.chat.completions.create(
                model="",
                messages=USER,
                extra_headers={"x-gateway-timeout-ms": "300"},  # type: ignore[arg-type]
            )
        assert late.value.status_code == 504
        await asyncio.to_thread(idle, gateway, "the work past its deadline to be cancelled")

        # A stream of 1,000 words at 0.6 s a word: read the first, then hang up.
        words = " ".join(f"w{i}" for i in range(1000))
        stream = await client.chat.completions.create(
            model="", messages=[{"role": "user", "content": words}], max_tokens=1000, stream=True
        )
        first = [c async for c in _take(stream, 2)]
        assert first[-1].choices[0].delta.content == "w0"
        assert gateway.metric("gateway_local_in_flight") == 1
        await stream.close()
        await asyncio.to_thread(idle, gateway, "the stream's work to be cancelled after the client hung up")
        await client.close()
    finally:
        gateway.stop()


async def _take(
    stream: openai.AsyncStream[openai.types.chat.ChatCompletionChunk], n: int
) -> AsyncIterator[openai.types.chat.ChatCompletionChunk]:
    count = 0
    async for chunk in stream:
        yield chunk
        count += 1
        if count == n:
            return


def idle(gateway: GatewayProcess, what: str) -> None:
    wait_until(lambda: gateway.metric("gateway_local_in_flight") == 0, timeout_s=30, what=what, interval_s=0.1)


async def test_api_keys_at_the_openai_door(fakes: dict[str, FakeProviderServer], tmp_path: Path) -> None:
    """401, 403 and 429 as the SDK raises them, and the key's name on the usage of HTTP requests."""
    text = config(fakes["openai"], tmp_path)
    (tmp_path / "keys.toml").write_text(text)
    keys = {
        name: await asyncio.to_thread(keys_cli, tmp_path / "keys.toml", "create", name, *flags)
        for name, flags in {
            "ops": ("--admin",),
            "desk": (),
            "private": ("--local-only",),
            "slow": ("--rpm", "1"),
        }.items()
    }
    gateway = await asyncio.to_thread(start_gateway, text, tmp_path, env={**TEST_KEYS, **keys_file(tmp_path / "state")})
    try:

        def as_key(name: str) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=f"{gateway.http_url}/v1", api_key=keys.get(name, name), max_retries=0)

        with pytest.raises(openai.AuthenticationError):
            await as_key("gw_not_a_key").chat.completions.create(model="", messages=USER)  # type: ignore[arg-type]
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await as_key("private").chat.completions.create(model="openai/gpt-test", messages=USER)  # type: ignore[arg-type]
        assert "local-only" in denied.value.message
        assert fakes["openai"].requests == 0
        slow = as_key("slow")
        await slow.chat.completions.create(model="", messages=USER)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as limited:
            await slow.chat.completions.create(model="", messages=USER)  # type: ignore[arg-type]
        assert 0 < int(limited.value.response.headers["retry-after"]) <= 60
        assert "x-should-retry" not in limited.value.response.headers  # a wait the SDKs honour
        desk = as_key("desk")
        for _ in range(3):
            await desk.chat.completions.create(model="", messages=USER)  # type: ignore[arg-type]
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            usage = await pb_grpc.InferenceGatewayStub(channel).GetUsage(
                pb.GetUsageRequest(client="desk"), metadata=(("authorization", f"Bearer {keys['ops']}"),)
            )
        assert usage.requests == 3
    finally:
        gateway.stop()
    log = gateway.log_text()
    assert not [name for name, key in keys.items() if key in log], "a key is in the log"


@pytest.fixture(scope="session")
def node_client() -> Iterator[Path]:
    """The official openai npm package, installed from tests/node/package-lock.json into tests/node/node_modules."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed; the npm openai package test needs Node 20 or later")
    if not (NODE_DIR / "node_modules" / "openai" / "package.json").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, capture_output=True, timeout=300
        )
    yield NODE_DIR / "openai_client.mjs"


async def test_npm_openai_package_plain_stream_and_errors(
    fakes: dict[str, FakeProviderServer], tmp_path: Path, node_client: Path
) -> None:
    gateway = await start(fakes, tmp_path)
    try:
        env = {**os.environ, "GATEWAY_BASE_URL": f"{gateway.http_url}/v1"}
        done = await asyncio.to_thread(
            subprocess.run, ["node", str(node_client)], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)
    finally:
        gateway.stop()
    plain = seen["plain"]
    assert plain["text"] == fakes["openai"].reply.text
    assert plain["headers"] == {"tier": "remote", "provider": "openai", "escalation": "rule", "attempts": "openai:ok"}
    assert plain["gateway"]["tier"] == "remote"
    assert plain["usage"]["completion_tokens"] > 0
    stream = seen["stream"]
    assert stream["text"] == "node says the trend is up"
    assert stream["gateway"]["tier"] == "local"
    assert stream["gateway"]["confidence"] == 1.0
    assert stream["usage"]["total_tokens"] > 0
    assert seen["unsupported"]["status"] == 400  # the legacy `functions`: a 400 naming it and what to send
    assert seen["unsupported"]["param"] == "functions"
    assert "tools" in seen["unsupported"]["message"]
    assert seen["models"][0] == "echo"
    assert "openai/gpt-test" in seen["models"]
