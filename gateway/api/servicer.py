"""grpc.aio servicer: proto -> domain -> router -> proto. No routing decisions here.

Every GatewayError maps to its gRPC status in `abort_with`, the one place
errors become status codes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import NoReturn, TypeVar

import grpc

from gateway.api import convert, trace_context
from gateway.api.auth import Authenticator
from gateway.api.drain import DRAINING, Drain
from gateway.api.usage_convert import usage_to_proto
from gateway.core.contracts import Priority, Request, Result
from gateway.core.errors import GatewayError, InvalidArgument, ResourceExhausted, Status, Unavailable
from gateway.observe.counters import UsageCounters
from gateway.observe.usage_report import UsageQuery, UsageReport
from gateway.routing.admission import Admission, Refusal
from gateway.routing.answerer import Answerer
from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")

ProviderUsageSource = Callable[[], Awaitable[list[pb.ProviderUsage]]]
UsageReportSource = Callable[[UsageQuery], Awaitable[UsageReport]]
UsageScope = Callable[[str, str], str]  # (caller, client asked for) -> client to report; raises when not allowed


async def _no_providers() -> list[pb.ProviderUsage]:
    return []


class InferenceGatewayServicer(pb_grpc.InferenceGatewayServicer):
    def __init__(
        self,
        router: Answerer,
        counters: UsageCounters,
        *,
        default_max_tokens: int,
        max_batch_items: int,
        provider_usage: ProviderUsageSource = _no_providers,
        usage_report: UsageReportSource | None = None,
        authenticator: Authenticator | None = None,
        usage_scope: UsageScope | None = None,
        drain: Drain | None = None,
        admission: Admission | None = None,
    ) -> None:
        self._router = router
        self._admission = admission or Admission()
        self.drain = drain or Drain()
        self._counters = counters
        self._default_max_tokens = default_max_tokens
        self._max_batch_items = max_batch_items
        self._provider_usage = provider_usage
        self._usage_report = usage_report
        self._authenticator = authenticator
        self._usage_scope = usage_scope

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> pb.GenerateResponse:  # type: ignore[override]
        with await _counted(context, self.drain):
            caller = await self._caller(context)
            with await self._admitted(context, caller, request.priority):
                domain = await self._convert(request, context, caller=caller)
                result = await _guard(context, self._router.generate(domain))
                return convert.response_to_proto(result)

    async def GenerateStream(  # type: ignore[override]
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateChunk]:
        with await _counted(context, self.drain):
            caller = await self._caller(context)
            with await self._admitted(context, caller, request.priority):
                domain = await self._convert(request, context, caller=caller)
                stream = self._router.stream(domain)
                while True:
                    event = await _guard(context, _next(stream))
                    if event is None:
                        return
                    if isinstance(event, Result):
                        with self._admission.waiting():  # the client reading: not the gateway's own work
                            yield pb.GenerateChunk(final=convert.response_to_proto(event))
                        return
                    with self._admission.waiting():
                        yield convert.chunk_to_proto(event)

    async def GenerateBatch(  # type: ignore[override]
        self, request: pb.GenerateBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.GenerateBatchResponse:
        with await _counted(context, self.drain):
            caller = await self._caller(context)
            with await self._admitted(context, caller, pb.PRIORITY_BULK, batch=True):
                return await self._batch(request, context, caller)

    async def _batch(
        self, request: pb.GenerateBatchRequest, context: grpc.aio.ServicerContext, caller: str
    ) -> pb.GenerateBatchResponse:
        items = request.requests
        if not items:
            await abort_with(context, InvalidArgument("requests: at least one request is required"))
        if len(items) > self._max_batch_items:
            await abort_with(
                context,
                InvalidArgument(
                    f"requests: {len(items)} items exceed the cap of {self._max_batch_items} "
                    "(server.max_batch_items); split the batch"
                ),
            )
        domain = [await self._convert(item, context, f"requests[{i}].", caller) for i, item in enumerate(items)]
        outcomes = await asyncio.gather(*(self._router.generate(d) for d in domain), return_exceptions=True)
        failures = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, BaseException)]
        if failures:
            index, first = failures[0]
            if not isinstance(first, GatewayError):
                raise first
            await abort_with(
                context, type(first)(f"requests[{index}]: {first.message} ({len(failures)} of {len(items)} failed)")
            )
        return pb.GenerateBatchResponse(
            responses=[convert.response_to_proto(o) for o in outcomes if isinstance(o, Result)]
        )

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:  # type: ignore[override]
        await self._caller(context)
        return convert.models_to_proto(self._router.models())

    async def GetUsage(self, request: pb.GetUsageRequest, context: grpc.aio.ServicerContext) -> pb.GetUsageResponse:  # type: ignore[override]
        caller = await self._caller(context)
        client = request.client
        if self._usage_scope is not None:  # a key without the admin role reads only its own usage
            try:
                client = self._usage_scope(caller, client)
            except GatewayError as exc:
                await abort_with(context, exc)
        if self._usage_report is not None:  # the day's figures across every replica sharing the usage store
            try:
                report = await self._usage_report(UsageQuery(client, request.day, request.bucket_s))
            except GatewayError as exc:  # a day or bucket size it cannot report: INVALID_ARGUMENT naming it
                await abort_with(context, exc)
            except Exception as exc:  # noqa: BLE001 - a state store outage is UNAVAILABLE, with its cause
                await abort_with(context, Unavailable(f"usage store unreachable ({type(exc).__name__}: {exc})"))
            return usage_to_proto(report)
        snapshot = self._counters.snapshot()
        return pb.GetUsageResponse(
            providers=await self._provider_usage(),
            requests_by_tier=snapshot.requests_by_tier,
            escalations_by_reason=snapshot.escalations_by_reason,
        )

    async def _admitted(
        self, context: grpc.aio.ServicerContext, caller: str, priority: int, *, batch: bool = False
    ) -> AbstractContextManager[None]:
        """Room for the gateway's own work on this call (routing/admission.py decides); RESOURCE_EXHAUSTED with
        a retry-after when the gateway is saturated."""
        known = priority in (p.value for p in Priority)
        permit = self._admission.enter_door(
            caller,
            Priority(priority) if known else Priority.NORMAL,
            batch=batch,
            remaining_s=context.time_remaining(),
        )
        if isinstance(permit, Refusal):
            await abort_with(context, self._admission.refuse(permit))
        return self._admission.inside(permit)

    async def _caller(self, context: grpc.aio.ServicerContext) -> str:
        """Who is calling (API key name or certificate subject; "" = anonymous); UNAUTHENTICATED when unproven."""
        if self._authenticator is None:
            return ""
        authorization = [str(value) for key, value in context.invocation_metadata() or () if key == "authorization"]
        names = context.auth_context().get("x509_common_name", [])
        certificate_name = names[0].decode(errors="replace") if len(names) == 1 else ""
        try:
            return self._authenticator.caller(authorization, certificate_name)
        except GatewayError as exc:
            await abort_with(context, exc)

    async def _convert(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext, field: str = "", caller: str = ""
    ) -> Request:
        try:
            domain = convert.request_from_proto(
                request, default_max_tokens=self._default_max_tokens, timeout_s=context.time_remaining(), field=field
            )
        except InvalidArgument as exc:
            await abort_with(context, exc)
        domain = trace_context.from_metadata(domain, context.invocation_metadata())
        return dataclasses.replace(domain, client=caller) if caller else domain


async def _counted(context: grpc.aio.ServicerContext, drain: Drain) -> AbstractContextManager[None]:
    """The call, counted in flight; UNAVAILABLE (retry on another replica) once the gateway is draining."""
    if drain.draining:
        await abort_with(context, Unavailable(DRAINING))
    return drain.call()


async def _next(stream: AsyncIterator[T]) -> T | None:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None


async def _guard(context: grpc.aio.ServicerContext, work: Awaitable[T]) -> T:
    """Await `work`; a GatewayError becomes the matching gRPC status with its message."""
    try:
        return await work
    except GatewayError as exc:
        await abort_with(context, exc)


async def abort_with(context: grpc.aio.ServicerContext, error: GatewayError) -> NoReturn:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:  # the deadline passed: gRPC has ended the call already
        raise asyncio.CancelledError
    code = grpc.StatusCode[error.status.value] if error.status is not Status.INTERNAL else grpc.StatusCode.INTERNAL
    if isinstance(error, ResourceExhausted) and error.resets_at is not None:
        wait_s = max(0, math.ceil((error.resets_at - datetime.now(UTC)).total_seconds()))
        resets = error.resets_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        context.set_trailing_metadata((("retry-after", str(wait_s)), ("x-gateway-resets-at", resets)))
    await context.abort(code, error.message)
    raise AssertionError("unreachable: context.abort raises")
