"""GatewayClient: the blocking client over a grpc channel."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TypeVar

import grpc

from gateway.client import convert
from gateway.client.channel import ChannelOption, Tls, auth_metadata, sync_channel
from gateway.client.errors import IncompleteStream, from_rpc_error
from gateway.client.retry import RetryPolicy
from gateway.client.types import ModelInfo, Request, Result, UsageReport
from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT_S = 60.0
T = TypeVar("T")


class GatewayClient:
    """Blocking calls to a gateway. Every call has a deadline (`timeout`, else `timeout_s`) that covers its
    retries; UNAVAILABLE is retried by `retry`, every other failure raises its GatewayError at once.

    >>> with GatewayClient("127.0.0.1:50051", api_key=key) as gw:
    ...     print(gw.generate(Request("Is BTC trending?", task="trend")).text)
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
        sleep: Callable[[float], None] = time.sleep,
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
        self._channel = sync_channel(target, tls, channel_options)
        self._stub = pb_grpc.InferenceGatewayStub(self._channel)

    def __repr__(self) -> str:  # never shows the key
        return f"GatewayClient({self._target!r}, tls={self._tls}, api_key={'set' if self._metadata else 'none'})"

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def generate(self, request: Request | str, *, timeout: float | None = None) -> Result:
        reply = self._unary(self._stub.Generate, convert.request_to_proto(request), timeout)
        return convert.result_from_proto(reply)

    def generate_stream(self, request: Request | str, *, timeout: float | None = None) -> Iterator[str | Result]:
        """Text deltas as they are generated, then the final Result. Stopping early cancels the call."""
        msg = convert.request_to_proto(request)
        deadline = time.monotonic() + self._timeout(timeout)
        attempt = 0
        while True:
            attempt += 1
            call = self._stub.GenerateStream(msg, timeout=_left(deadline), metadata=self._metadata)
            started = False
            try:
                for chunk in call:
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
            self._sleep(wait)

    def route_batch(self, requests: Sequence[Request | str], *, timeout: float | None = None) -> list[Result]:
        """GenerateBatch: one result per request, in order. One failed item fails the batch (the message says which)."""
        msg = pb.GenerateBatchRequest(requests=[convert.request_to_proto(r) for r in requests])
        reply = self._unary(self._stub.GenerateBatch, msg, timeout)
        return convert.batch_from_proto(reply, len(requests))

    def models(self, *, timeout: float | None = None) -> list[ModelInfo]:
        return convert.models_from_proto(self._unary(self._stub.ListModels, pb.ListModelsRequest(), timeout))

    def usage(self, *, client: str = "", timeout: float | None = None) -> UsageReport:
        """Today's figures; `client` = only that API key's (or certificate subject's) requests."""
        return convert.usage_from_proto(self._unary(self._stub.GetUsage, pb.GetUsageRequest(client=client), timeout))

    def _timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self._timeout_s
        if not timeout > 0:
            raise ValueError(f"timeout: {timeout} must be above 0")
        return timeout

    def _unary(self, method: Callable[..., T], msg: object, timeout: float | None) -> T:
        deadline = time.monotonic() + self._timeout(timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                return method(msg, timeout=_left(deadline), metadata=self._metadata)
            except grpc.RpcError as exc:
                wait = self._retry.next_wait_s(exc.code(), attempt, _left(deadline), self._rng)
                if wait is None:
                    raise from_rpc_error(exc) from exc
            self._sleep(wait)


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)
