"""Tracing from config: the no-op tracer when `[tracing]` is off (OpenTelemetry is never imported), else OTLP."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.config import ConfigError, TracingConfig
from gateway.core.trace import NO_TRACER, Tracer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class TracingHandle:
    tracer: Tracer
    close: Callable[[], None] = _nothing  # flushes queued spans; blocking, so the server runs it in a thread


def build_tracing(config: TracingConfig, env: Mapping[str, str], exporter: SpanExporter | None = None) -> TracingHandle:
    """`exporter` replaces the OTLP exporter the config describes (the tracing tests pass an in-memory one)."""
    if not config.enabled:
        return TracingHandle(NO_TRACER)
    try:
        from gateway.observe.tracing import open_tracing
    except ImportError as exc:
        raise ConfigError(
            f"tracing.enabled: OpenTelemetry is not installed ({exc.name}); "
            "pip install 'trading-inference-gateway[tracing]' or set [tracing] enabled = false"
        ) from None
    tracing = open_tracing(config, env, exporter)
    return TracingHandle(tracing.tracer, tracing.close)
