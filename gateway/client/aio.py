"""AsyncGatewayClient: the asyncio client over a grpc.aio channel, the same calls as GatewayClient."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc

from gateway.client import convert
from gateway.client.channel import ChannelOption, Tls, aio_channel, auth_metadata
from gateway.client.errors import IncompleteStream, from_rpc_error
from gateway.client.retry import RetryPolicy
from gateway.client.sync import DEFAULT_TARGET, DEFAULT_TIMEOUT_S
from gateway.client.types import ModelInfo, Request, Result, UsageReport
from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc

T = TypeVar("T")


class AsyncGatewayClient:
    """Awaitable calls to a gateway: deadlines, retries on UNAVAILABLE only, typed results and errors.

    >>> async with AsyncGatewayClient("127.0.0.1:50051") as gw:
    ...     async for item in gw.generate_stream("Summarise the tape"):
    ...         print(item)
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        api_key: str | None = None,
        tls: Tls | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, shared safely
        channel_options: Sequence[ChannelOption] = (),
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s: {timeout_s} must be above 0")
        self._target = target
        self._metadata = auth_metadata(api_key)
        self._tls = tls is not None
        self._timeout_s = timeout_s
        self._retry = retry
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._channel = aio_channel(target, tls, channel_options)
        self._stub = pb_grpc.InferenceGatewayStub(self._channel)

    def __repr__(self) -> str:  # never shows the key
        return f"AsyncGatewayClient({self._target!r}, tls={self._tls}, api_key={'set' if self._metadata else 'none'})"

    async def __aenter__(self) -> AsyncGatewayClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def generate(self, request: Request | str, *, timeout: float | None = None) -> Result:
        reply = await self._unary(self._stub.Generate, convert.request_to_proto(request), timeout)
        return convert.result_from_proto(reply)

    async def generate_stream(
        self, request: Request | str, *, timeout: float | None = None
    ) -> AsyncIterator[str | Result]:
        """Text deltas as they are generated, then the final Result. Stopping early cancels the call."""
        msg = convert.request_to_proto(request)
        deadline = time.monotonic() + self._timeout(timeout)
        attempt = 0
        while True:
            attempt += 1
            call: Any = self._stub.GenerateStream(msg, timeout=_left(deadline), metadata=self._metadata)
            started = False
            try:
                async for chunk in call:
                    if chunk.HasField("final"):
                        yield convert.result_from_proto(chunk.final)
                        return
                    started = True
                    yield chunk.text
                raise IncompleteStream()
            except grpc.RpcError as exc:
                wait = None if started else self._retry.next_wait_s(exc.code(), attempt, _left(deadline), self._rng)
                if wait is None:
                    raise from_rpc_error(exc) from exc
            finally:
                call.cancel()  # a no-op once the call is done; ends it when the caller stops early
            await self._sleep(wait)

    async def route_batch(self, requests: Sequence[Request | str], *, timeout: float | None = None) -> list[Result]:
        """GenerateBatch: one result per request, in order. One failed item fails the batch (the message says which)."""
        msg = pb.GenerateBatchRequest(requests=[convert.request_to_proto(r) for r in requests])
        reply = await self._unary(self._stub.GenerateBatch, msg, timeout)
        return convert.batch_from_proto(reply, len(requests))

    async def models(self, *, timeout: float | None = None) -> list[ModelInfo]:
        return convert.models_from_proto(await self._unary(self._stub.ListModels, pb.ListModelsRequest(), timeout))

    async def usage(self, *, client: str = "", timeout: float | None = None) -> UsageReport:
        """Today's figures; `client` = only that API key's (or certificate subject's) requests."""
        reply = await self._unary(self._stub.GetUsage, pb.GetUsageRequest(client=client), timeout)
        return convert.usage_from_proto(reply)

    def _timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self._timeout_s
        if not timeout > 0:
            raise ValueError(f"timeout: {timeout} must be above 0")
        return timeout

    async def _unary(self, method: Callable[..., Awaitable[T]], msg: object, timeout: float | None) -> T:
        deadline = time.monotonic() + self._timeout(timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await method(msg, timeout=_left(deadline), metadata=self._metadata)
            except grpc.RpcError as exc:
                wait = self._retry.next_wait_s(exc.code(), attempt, _left(deadline), self._rng)
                if wait is None:
                    raise from_rpc_error(exc) from exc
            await self._sleep(wait)


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)
