"""A real gateway process with the real embedded model, called over real gRPC."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.gateway_process import ROOT, GatewayProcess
from tests.waiting import wait_until


def ask(content: str, **fields: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content=content)], **fields)  # type: ignore[arg-type]


def test_generate_answers_locally_with_confidence(stub: pb_grpc.InferenceGatewayStub) -> None:
    response = stub.Generate(ask("Name one stock exchange.", request_id="req-1", max_tokens=12), timeout=120)
    assert response.request_id == "req-1"
    assert response.text.strip()
    assert response.tier == pb.TIER_LOCAL
    assert response.provider == "transformers"
    assert response.model == "smollm2-135m-instruct"
    assert response.HasField("confidence")
    assert 0.0 <= response.confidence <= 1.0
    assert response.escalation == pb.ESCALATION_NONE
    assert response.usage.prompt_tokens > 0
    assert 0 < response.usage.completion_tokens <= 12
    # Default threshold 0.6; without a remote provider a low-confidence answer still stands.
    assert [a.outcome for a in response.attempts] == ["ok" if response.confidence >= 0.6 else "low_confidence"]
    assert response.finish_reason in {"stop", "length"}
    assert response.latency_ms > 0


def test_request_id_generated_when_empty(stub: pb_grpc.InferenceGatewayStub) -> None:
    first = stub.Generate(ask("Hi", max_tokens=2), timeout=120)
    second = stub.Generate(ask("Hi", max_tokens=2), timeout=120)
    assert first.request_id and second.request_id and first.request_id != second.request_id


def test_label_task_confidence_is_renormalised_over_labels(stub: pb_grpc.InferenceGatewayStub) -> None:
    response = stub.Generate(ask("Is water wet?", task="yesno", max_tokens=3), timeout=120)
    assert response.text.strip().lower().startswith(("yes", "no"))
    # Over the full vocabulary the first label token is rarely above 0.5; over {yes, no} one label always is.
    assert response.confidence >= 0.5
    low = stub.Generate(ask("Is water wet?", task="yesno", max_tokens=3, min_confidence=1.0), timeout=120)
    assert low.confidence < 1.0
    assert low.tier == pb.TIER_LOCAL  # no remote provider configured: the local answer stands
    assert low.attempts[0].outcome == "low_confidence"


def test_stream_delivers_text_before_the_final_chunk(stub: pb_grpc.InferenceGatewayStub) -> None:
    started = time.perf_counter()
    chunks, arrivals = [], []
    for chunk in stub.GenerateStream(ask("Count from one to ten in words.", max_tokens=24), timeout=120):
        chunks.append(chunk)
        arrivals.append(time.perf_counter() - started)
    finals = [c.final for c in chunks if c.HasField("final")]
    assert len(finals) == 1 and chunks[-1].HasField("final")
    texts = [c.text for c in chunks[:-1]]
    assert len(texts) >= 3 and all(texts)
    assert "".join(texts) == finals[0].text
    assert finals[0].tier == pb.TIER_LOCAL and finals[0].HasField("confidence")
    # Real streaming: the first piece arrived well before the whole answer was ready.
    assert arrivals[0] < arrivals[-1] * 0.8


def test_batch_keeps_request_order_and_decodes_together(
    stub: pb_grpc.InferenceGatewayStub, model_gateway: GatewayProcess
) -> None:
    batches_before = model_gateway.metric("gateway_local_batch_size_count")
    requests = [ask(f"Say the number {n}.", request_id=f"b{n}", max_tokens=6) for n in range(4)]
    response = stub.GenerateBatch(pb.GenerateBatchRequest(requests=requests), timeout=300)
    assert [r.request_id for r in response.responses] == ["b0", "b1", "b2", "b3"]
    assert all(r.tier == pb.TIER_LOCAL and r.text for r in response.responses)
    # The batch metric is recorded just after the batch's answers go out: wait for it to move.
    batches = wait_until(
        lambda: model_gateway.metric("gateway_local_batch_size_count") - batches_before,
        timeout_s=30,
        what="the batch size metric to count the batch",
        interval_s=0.1,
    )
    assert 1 <= batches < 4  # four requests, fewer micro-batches


def test_a_request_that_cannot_finish_by_its_deadline_is_refused_before_any_work(
    stub: pb_grpc.InferenceGatewayStub,
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Generate(ask("Write a long essay about markets.", request_id="late-1", max_tokens=500), timeout=1.0)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "500 tokens" in (err.value.details() or "") and "ms left" in (err.value.details() or "")
    # Nothing was started: the next request is served promptly, not after 500 tokens.
    assert stub.Generate(ask("Hi", max_tokens=2), timeout=60).text


def test_list_models_and_usage(stub: pb_grpc.InferenceGatewayStub) -> None:
    models = stub.ListModels(pb.ListModelsRequest(), timeout=10).models
    assert ("smollm2-135m-instruct", pb.TIER_LOCAL, "transformers") in [(m.name, m.tier, m.provider) for m in models]
    before = stub.GetUsage(pb.GetUsageRequest(), timeout=10).requests_by_tier.get("local", 0)
    stub.Generate(ask("Hi", max_tokens=2, bypass_cache=True), timeout=120)
    usage = stub.GetUsage(pb.GetUsageRequest(), timeout=10)
    assert usage.requests_by_tier["local"] == before + 1
    assert list(usage.providers) == []  # no provider configured


def test_health_and_reflection(model_gateway: GatewayProcess) -> None:
    with grpc.insecure_channel(model_gateway.target) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="gateway.v1.InferenceGateway"), timeout=5
        )
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        services = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {"gateway.v1.InferenceGateway", "grpc.health.v1.Health"} <= services
    with urllib.request.urlopen(f"{model_gateway.http_url}/healthz", timeout=5) as reply:
        assert reply.status == 200


BAD_REQUESTS = [
    (pb.GenerateRequest(), "messages"),
    (pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content="  ")]), "messages[0].content"),
    (pb.GenerateRequest(messages=[pb.ChatMessage(role="robot", content="hi")]), "messages[0].role"),
    (ask("hi", max_tokens=100_000), "max_tokens"),
    (ask("hi", temperature=3.0), "temperature"),
    (ask("hi", temperature=-0.5), "temperature"),
    (ask("hi", temperature=float("nan")), "temperature"),
    (ask("hi", min_confidence=1.5), "min_confidence"),
    (ask("hi", task="no-such-task"), "task"),
    (ask("hi", model="no-such-model"), "model"),
    (ask("hi", model="openai/gpt-4o-mini"), "model"),
]


@pytest.mark.parametrize(("request_message", "field"), BAD_REQUESTS, ids=[f for _, f in BAD_REQUESTS])
def test_bad_input_is_invalid_argument_naming_the_field(
    stub: pb_grpc.InferenceGatewayStub, request_message: pb.GenerateRequest, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Generate(request_message, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field)


def test_unknown_task_lists_the_known_ones(stub: pb_grpc.InferenceGatewayStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Generate(ask("hi", task="volatility"), timeout=30)
    assert "yesno" in err.value.details()


def test_batch_limits(stub: pb_grpc.InferenceGatewayStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.GenerateBatch(pb.GenerateBatchRequest(requests=[ask("hi")] * 5), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_batch_items" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.GenerateBatch(pb.GenerateBatchRequest(requests=[ask("hi"), pb.GenerateRequest()]), timeout=30)
    assert err.value.details().startswith("requests[1].messages")


def test_oversized_request_is_resource_exhausted_and_server_keeps_serving(
    stub: pb_grpc.InferenceGatewayStub,
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Generate(ask("x" * 70_000), timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.Generate(ask("Hi", max_tokens=2, bypass_cache=True), timeout=120).tier == pb.TIER_LOCAL


def test_concurrent_bad_and_good_requests_leave_the_server_serving(stub: pb_grpc.InferenceGatewayStub) -> None:
    def call(i: int) -> grpc.StatusCode:
        request = ask("Hi", max_tokens=2) if i % 2 else pb.GenerateRequest()
        try:
            stub.Generate(request, timeout=120)
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            return exc.code()

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(call, range(8)))
    assert codes.count(grpc.StatusCode.OK) == 4
    assert codes.count(grpc.StatusCode.INVALID_ARGUMENT) == 4


def test_cli_ask_prints_text_and_metadata(model_gateway: GatewayProcess) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "ask", "Say hi.", "--max-tokens", "4", "--target", model_gateway.target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip()
    assert "tier=TIER_LOCAL provider=transformers" in done.stderr
    assert re.search(r"confidence=\d\.\d{3}", done.stderr)
    command = [sys.executable, "-m", "gateway", "ask", "Say hi.", "--max-tokens", "4", "--stream", "--local-only"]
    streamed = subprocess.run(
        [*command, "--target", model_gateway.target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert streamed.stdout.strip() and "latency=" in streamed.stderr
