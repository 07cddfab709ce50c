"""A gRPC InferenceGateway server that fails on cue: for the client's retry, metadata and TLS tests.

It speaks the real wire protocol (the gateway.v1 service on a real grpc server); what it answers is
scripted, so a test can make the Nth call fail with any status, which a real gateway cannot be made
to do on demand.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Failure:
    code: grpc.StatusCode
    message: str
    trailing: tuple[tuple[str, str], ...] = ()


@dataclass
class ScriptedGateway(pb_grpc.InferenceGatewayServicer):
    failures: list[Failure] = field(default_factory=list)  # one is used per call, before it answers
    fail_after_first_chunk: Failure | None = None  # GenerateStream: fail once a delta is sent
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # method, metadata
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, method: str) -> int:
        with self._lock:
            return sum(1 for name, _ in self.calls if name == method)

    def Generate(self, request: pb.GenerateRequest, context: grpc.ServicerContext) -> pb.GenerateResponse:
        self._enter("Generate", context)
        return _answer(request)

    def GenerateStream(self, request: pb.GenerateRequest, context: grpc.ServicerContext) -> Iterator[pb.GenerateChunk]:
        self._enter("GenerateStream", context)
        yield pb.GenerateChunk(text="first ")
        if self.fail_after_first_chunk is not None:
            _abort(context, self.fail_after_first_chunk)
        yield pb.GenerateChunk(final=_answer(request))

    def GenerateBatch(
        self, request: pb.GenerateBatchRequest, context: grpc.ServicerContext
    ) -> pb.GenerateBatchResponse:
        self._enter("GenerateBatch", context)
        return pb.GenerateBatchResponse(responses=[_answer(r) for r in request.requests])

    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext) -> pb.ListModelsResponse:
        self._enter("ListModels", context)
        return pb.ListModelsResponse(models=[pb.ModelInfo(name="scripted", tier=pb.TIER_LOCAL, provider="scripted")])

    def GetUsage(self, request: pb.GetUsageRequest, context: grpc.ServicerContext) -> pb.GetUsageResponse:
        self._enter("GetUsage", context)
        return pb.GetUsageResponse(day="2026-01-02")

    def _enter(self, method: str, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.calls.append((method, {k: str(v) for k, v in context.invocation_metadata()}))
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            _abort(context, failure)


def _abort(context: grpc.ServicerContext, failure: Failure) -> None:
    context.set_trailing_metadata(failure.trailing)
    context.abort(failure.code, failure.message)


def _answer(request: pb.GenerateRequest) -> pb.GenerateResponse:
    return pb.GenerateResponse(
        request_id=request.request_id or "scripted-id",
        text=request.messages[-1].content if request.messages else "",
        tier=pb.TIER_LOCAL,
        provider="scripted",
        model="scripted",
        confidence=0.5,
        usage=pb.Usage(prompt_tokens=1, completion_tokens=1),
    )


def serve(servicer: ScriptedGateway, credentials: grpc.ServerCredentials | None = None) -> tuple[grpc.Server, str]:
    """Start it on a free loopback port; returns the server (stop it) and its target."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_InferenceGatewayServicer_to_server(servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, f"127.0.0.1:{port}"
