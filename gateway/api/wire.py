"""Registering the servicer so that bytes that are not a valid message get INVALID_ARGUMENT.

grpc.aio answers a request its deserializer cannot parse with UNKNOWN and an
exception name. Here each method's deserializer returns a `Malformed` marker
instead of raising, and the method answers it with INVALID_ARGUMENT naming the
message type, before the servicer sees it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from gateway.v1 import gateway_pb2_grpc as pb_grpc

SERVICE = "gateway.v1.InferenceGateway"


@dataclass(frozen=True, slots=True)
class Malformed:
    """What a lenient deserializer returns for bytes that do not parse."""

    reason: str


def add_servicer(servicer: pb_grpc.InferenceGatewayServicer, server: grpc.aio.Server) -> None:
    capture = _Capture()
    pb_grpc.add_InferenceGatewayServicer_to_server(servicer, capture)
    handlers = {name: _lenient(name, handler) for name, handler in capture.handlers.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


class _Capture:
    """Stands in for the server while the generated code hands over its method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, _: Sequence[Any]) -> None:
        return None

    def add_registered_method_handlers(self, _: str, handlers: dict[str, Any]) -> None:
        self.handlers = handlers


def _lenient(method: str, handler: Any) -> Any:
    parse: Callable[[bytes], Any] = handler.request_deserializer

    def deserialize(raw: bytes) -> Any:
        try:
            return parse(raw)
        except DecodeError as exc:
            return Malformed(f"request: not a valid protobuf message for {method} ({exc}); check the client's stubs")

    if handler.unary_unary is not None:
        unary = handler.unary_unary

        async def unary_guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
            return await unary(request, context)

        return handler._replace(request_deserializer=deserialize, unary_unary=unary_guarded)
    streaming = handler.unary_stream

    async def stream_guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        async for item in streaming(request, context):
            yield item

    return handler._replace(request_deserializer=deserialize, unary_stream=stream_guarded)
