"""A provider that breaks mid-stream, against a real gateway process streaming over gRPC.

The OpenAI stand-in resets the connection, sends a frame that is not SSE JSON,
or stalls; Anthropic's stand-in is the next provider in the chain. What the
gateway does is documented in docs/operations.md ("Faults"): before the first
piece of text has gone to the client it falls over to the next provider; after
it, the next provider continues the answer (Anthropic from the text so far as its
assistant prefill), so the client reads one stream; with no provider left the stream
ends with UNAVAILABLE naming the provider ("failed mid-stream"), or DEADLINE_EXCEEDED
when the deadline passes first. Each case ends with the gateway answering the next
request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import openai
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.anthropic_fake import FakeAnthropic
from tests.fakes.base import FakeProviderServer, Fault, Reply
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.providers import TEST_KEYS, base_url
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import GatewayProcess, start_gateway
from tests.waiting import wait_until

PROVIDER_TIMEOUT_S = 3.0  # OpenAI's timeout_s: how long the SDK waits for the next bytes
CHUNK_TIMEOUT_S = 2.0  # [routing] stream_chunk_timeout_s: a stream silent this long has stalled

CONFIG = """
[server]
default_max_tokens = 8

[local]
backend = "echo"

[cache]
enabled = false

[routing]
escalation_order = ["openai", "anthropic"]
stream_chunk_timeout_s = {chunk_timeout_s}

[[routing.rules]]
match_tag = {{ route = "remote" }}
escalate = true

[providers.openai]
model = "gpt-test"
base_url = "{openai}"
max_retries = 0
timeout_s = {timeout_s}

[providers.anthropic]
model = "claude-test"
base_url = "{anthropic}"
max_retries = 0
"""


@dataclass
class PrefillAnthropic(FakeAnthropic):
    """The Anthropic stand-in continuing a final assistant turn in place, as the Messages API does: it sends the
    rest of its reply after the prefilled text."""

    def stream_frames(self, body: dict[str, Any], model: str) -> list[str]:
        messages = body.get("messages") or []
        prefix = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
        full = self.reply
        if prefix and full.text.startswith(prefix):
            self.reply = Reply(full.text[len(prefix) :], full.model)
        try:
            return super().stream_frames(body, model)
        finally:
            self.reply = full


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProviderServer]]:
    continuing = PrefillAnthropic()
    with serving_in_thread(FakeOpenAI()) as openai, serving_in_thread(continuing) as anthropic:
        yield {"openai": openai, "anthropic": anthropic}


@pytest.fixture(scope="module")
def gateway(fakes: dict[str, FakeProviderServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    text = CONFIG.format(
        openai=base_url(fakes["openai"]),
        anthropic=base_url(fakes["anthropic"]),
        timeout_s=PROVIDER_TIMEOUT_S,
        chunk_timeout_s=CHUNK_TIMEOUT_S,
    )
    process = start_gateway(text, tmp_path_factory.mktemp("stream-faults"), env=TEST_KEYS, ready_timeout_s=60)
    yield process
    process.stop()


@pytest.fixture
def stub(gateway: GatewayProcess) -> Iterator[pb_grpc.InferenceGatewayStub]:
    with grpc.insecure_channel(gateway.target) as channel:
        yield pb_grpc.InferenceGatewayStub(channel)


@pytest.fixture(autouse=True)
def still_serving(stub: pb_grpc.InferenceGatewayStub, fakes: dict[str, FakeProviderServer]) -> Iterator[None]:
    """After each fault the gateway streams the next remote request from OpenAI as if nothing happened."""
    yield
    chunks = list(stub.GenerateStream(ask("and now?"), timeout=10))
    assert chunks[-1].final.provider == "openai"
    assert chunks[-1].final.text == fakes["openai"].reply.text


def ask(text: str) -> pb.GenerateRequest:
    return pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content=text)], tags={"route": "remote"})


def read(
    stub: pb_grpc.InferenceGatewayStub, text: str, timeout_s: float
) -> tuple[list[pb.GenerateChunk], grpc.RpcError | None, float]:
    """The chunks that arrived, the error that ended the stream (None if it finished), and the seconds it took."""
    chunks: list[pb.GenerateChunk] = []
    started = time.monotonic()
    try:
        for chunk in stub.GenerateStream(ask(text), timeout=timeout_s):
            chunks.append(chunk)
    except grpc.RpcError as exc:
        return chunks, exc, time.monotonic() - started
    return chunks, None, time.monotonic() - started


def tokens_used(stub: pb_grpc.InferenceGatewayStub) -> dict[str, int]:
    return {p.provider: p.tokens_used for p in stub.GetUsage(pb.GetUsageRequest(), timeout=5).providers}


def attempts(chunk: pb.GenerateChunk) -> list[tuple[str, str]]:
    return [(a.provider, a.outcome) for a in chunk.final.attempts]


@pytest.mark.parametrize(
    "fault",
    [Fault(reset_after_frames=1), Fault(garbage_after_frames=1), Fault(stall_after_frames=1)],
    ids=["reset", "not-sse-json", "stall"],
)
def test_a_fault_before_any_text_falls_over_to_the_next_provider(
    stub: pb_grpc.InferenceGatewayStub, fakes: dict[str, FakeProviderServer], fault: Fault
) -> None:
    anthropic_before = fakes["anthropic"].requests
    fakes["openai"].fail(fault)
    chunks, error, _ = read(stub, "is the trend up", timeout_s=PROVIDER_TIMEOUT_S + 10)
    assert error is None, error
    final = chunks[-1]
    assert final.final.provider == "anthropic"
    assert "".join(c.text for c in chunks[:-1]) == final.final.text == fakes["anthropic"].reply.text
    assert attempts(final) == [("openai", "error"), ("anthropic", "ok")]
    assert fakes["anthropic"].requests == anthropic_before + 1


@pytest.mark.parametrize(
    "fault",
    [Fault(reset_after_frames=2), Fault(garbage_after_frames=2), Fault(stall_after_frames=2)],
    ids=["reset", "not-sse-json", "stall"],
)
def test_a_fault_after_the_first_piece_is_continued_by_the_next_provider(
    stub: pb_grpc.InferenceGatewayStub, fakes: dict[str, FakeProviderServer], fault: Fault
) -> None:
    before = tokens_used(stub)
    fakes["openai"].fail(fault)
    chunks, error, _ = read(stub, "is the trend down", timeout_s=CHUNK_TIMEOUT_S + 10)
    assert error is None, error
    final = chunks[-1]
    # one unbroken stream: OpenAI's first piece, then Anthropic's continuation, and the final chunk says so
    assert [c.text for c in chunks[:-1]] == ["The ", "trend ", "is ", "up"]
    assert final.final.text == "The trend is up"
    assert final.final.provider == "anthropic"
    assert attempts(final) == [("openai", "error"), ("anthropic", "ok")]
    # Anthropic got the text so far as its assistant prefill (trailing whitespace held back, as the API wants)
    sent = fakes["anthropic"].seen[-1].body["messages"]
    assert sent[-1] == {"role": "assistant", "content": "The"}
    assert sent[-2]["role"] == "user"
    # both tries are charged to their providers' budgets
    after = tokens_used(stub)
    assert after["openai"] > before["openai"] and after["anthropic"] > before["anthropic"]


def test_a_continuation_that_breaks_too_ends_with_unavailable_when_no_provider_is_left(
    stub: pb_grpc.InferenceGatewayStub, fakes: dict[str, FakeProviderServer]
) -> None:
    fakes["openai"].fail(Fault(reset_after_frames=2))
    fakes["anthropic"].fail(Fault(reset_after_frames=4))  # message_start, block start, ping, then one piece
    chunks, error, _ = read(stub, "is the trend down", timeout_s=10)
    assert [c.text for c in chunks] == ["The ", "trend "]
    assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE
    details = error.details() or ""
    assert "anthropic failed mid-stream after sending text" in details
    assert "no other provider could continue" in details


def test_a_stall_after_the_first_piece_ends_at_the_deadline_and_hangs_up_on_the_provider(
    stub: pb_grpc.InferenceGatewayStub, fakes: dict[str, FakeProviderServer]
) -> None:
    deadline_s = 1.5  # shorter than the provider's own timeout: the request's deadline ends it
    abandoned = fakes["openai"].streams_abandoned
    fakes["openai"].fail(Fault(stall_after_frames=2))
    chunks, error, _ = read(stub, "is the trend flat", timeout_s=deadline_s)
    assert [c.text for c in chunks] == ["The "]
    assert error is not None and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(  # the gateway let go of the stalled call: its connection to the provider is closed
        lambda: fakes["openai"].streams_abandoned > abandoned, timeout_s=2.0, what="the gateway to hang up on OpenAI"
    )


def test_the_openai_door_streams_one_unbroken_answer_across_the_break(
    gateway: GatewayProcess, fakes: dict[str, FakeProviderServer]
) -> None:
    fakes["openai"].fail(Fault(reset_after_frames=2))
    client = openai.OpenAI(base_url=f"{gateway.http_url}/v1", api_key="unused", max_retries=0, timeout=15)
    with client:
        chunks = list(
            client.chat.completions.create(
                model="",
                messages=[{"role": "user", "content": "is the trend down"}],
                stream=True,
                extra_body={"tags": {"route": "remote"}},
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The trend is up"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
