"""Bootstrap: build the pieces from config, serve gRPC + HTTP, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.api import convert, http, wire
from gateway.api.auth import Authenticator
from gateway.api.http_server import GatewayAppRunner
from gateway.api.openai_embeddings import EmbeddingRoutes
from gateway.api.openai_http import OpenAIRoutes
from gateway.api.servicer import InferenceGatewayServicer
from gateway.app.admission import build_admission
from gateway.app.embedding import open_embedder
from gateway.app.front import build_front
from gateway.app.learning import Learning
from gateway.app.local import build_local_backend, open_adapter_registry
from gateway.app.remote import build_remote_tier
from gateway.app.tracing import build_tracing
from gateway.app.transport import check_transport, describe_transport, grpc_credentials, http_ssl_context
from gateway.config import Config
from gateway.core.contracts import LocalBackend
from gateway.observe.counters import UsageCounters
from gateway.observe.logs import RequestLog
from gateway.observe.loop_lag import LoopLag
from gateway.observe.metrics import Metrics
from gateway.routing.access import usage_scope
from gateway.routing.admission import Admission
from gateway.routing.aliases import Aliases
from gateway.routing.router import Router
from gateway.routing.tasks import ChainedTasks, ConfigTasks
from gateway.state.budget.expiry import ReservationExpiry
from gateway.state.keys.table import KeyTable
from gateway.state.open import SharedState, describe_state, open_state
from gateway.v1 import gateway_pb2 as pb

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InferenceGateway"].full_name


def describe_mode(config: Config, *, keys: bool = False) -> str:
    """The first log line: what this process will answer with, and whether it asks callers for keys."""
    return f"{_describe_tiers(config)}; {_describe_access(config, keys)}"


def _describe_access(config: Config, keys: bool) -> str:
    authentication = "API keys required" if keys else "authentication off (no API keys)"
    return f"{authentication}, {describe_transport(config)}"


def _describe_tiers(config: Config) -> str:
    local: str = config.local.backend
    if local == "transformers" and not config.local.transformers.model_dir:
        local = "the embedded default SmolLM2-135M-Instruct on CPU (transformers)"
    providers = [name for name, p in config.providers.items() if p.enabled]
    if config.offline or not providers:
        return f"serving {local}, local only ({'offline=true' if config.offline else 'no providers configured'})"
    return f"serving {local}, escalating to {', '.join(providers)}"


async def serve(  # noqa: PLR0915 - the bootstrap reads top to bottom, one piece per statement
    config: Config,
    stop: asyncio.Event | None = None,
    env: Mapping[str, str] | None = None,
    *,
    span_exporter: SpanExporter | None = None,
    state_opener: Callable[[Config], SharedState] = open_state,
) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set), then drain in-flight calls and exit.

    `env`: where provider API keys are read (default: the process environment).
    `span_exporter`: replaces the OTLP exporter of `[tracing]` (the tracing tests hand in an in-memory one).
    `state_opener`: opens the shared-state stores from the config (the outage tests wrap them in failing ones).
    """
    state, keys = await _open_state(config, state_opener)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    local_box: list[LocalBackend] = []
    admission_box: list[Admission] = []  # made once the local backend says its own limit
    loop_lag = LoopLag()
    loop_lag.start()
    metrics = Metrics(
        queue_depth=lambda: float(local_box[0].load().in_flight) if local_box else 0.0,
        gates=lambda: admission_box[0].figures() if admission_box else {},
        loop_lag=loop_lag.seconds,
    )
    local = await asyncio.to_thread(build_local_backend, config, metrics.on_batch)
    local_box.append(local)
    admission = build_admission(config.admission, local.load().max_in_flight, loop_lag.seconds)
    admission_box.append(admission)
    log.info(describe_state(config))
    tracing = build_tracing(config.tracing, os.environ if env is None else env, span_exporter)
    expiries = [  # reservations a stopped gateway left open: provider budgets and API-key quotas
        ReservationExpiry(state.ledger, expiry_s=config.budget.reservation_expiry_s),
        ReservationExpiry(state.key_quotas, expiry_s=config.budget.reservation_expiry_s, name="key quotas"),
    ]
    for expiry in expiries:
        expiry.start()
    remote = await asyncio.to_thread(
        build_remote_tier,
        config,
        os.environ if env is None else env,
        state.ledger,
        breakers=state.breakers,
        rate_limits=state.rate_limits,
        tracer=tracing.tracer,
    )

    async def provider_usage() -> list[pb.ProviderUsage]:
        return convert.provider_usage_to_proto(await remote.usage_today()) if remote is not None else []

    counters = UsageCounters()
    adapters = await asyncio.to_thread(open_adapter_registry, config, local.model)
    watcher = loop.create_task(adapters.watch(config.adapters.watch_s)) if config.adapters.watch_s else None
    learning = Learning(config, ChainedTasks(adapters, ConfigTasks(config.tasks)), state, metrics)
    await learning.start()
    tasks = learning.tasks  # with the thresholds the live audit raised
    router = Router(
        local,
        tasks,
        config.routing,
        remote=remote,
        offline=config.offline,
        tracer=tracing.tracer,
        aliases=Aliases(config.models.aliases),
        admission=admission,
    )
    learning.audit(router, {name: p.daily_token_budget for name, p in config.providers.items() if p.enabled})
    embedder = await open_embedder(config)  # only when [embeddings] or [cache.semantic] is enabled
    front = build_front(
        config,
        router,
        tasks,
        state,
        metrics,
        result_observers=(counters.record, RequestLog().record),
        answer_observers=learning.observers(),
        accuracy=learning.accuracy,
        keys=keys,
        tracer=tracing.tracer,
        embedder=embedder,
    )
    front.start()
    authenticator = Authenticator(keys)
    servicer = InferenceGatewayServicer(
        front.answerer,
        counters,
        default_max_tokens=config.server.default_max_tokens,
        max_batch_items=config.server.max_batch_items,
        provider_usage=provider_usage,
        usage_report=lambda q: front.reporter.report(client=q.client, day=q.day, bucket_s=q.bucket_s),
        authenticator=authenticator,
        usage_scope=lambda caller, asked: usage_scope(keys, caller, asked),
        admission=admission,
    )

    server, health_servicer = await _start_grpc(config, servicer)
    address = f"{config.server.host}:{config.server.port}"

    draining = False
    embedding_routes = None
    if embedder is not None and config.embeddings.enabled:
        embedding_routes = EmbeddingRoutes(embedder, max_request_bytes=config.server.max_request_bytes)
    openai_routes = OpenAIRoutes(
        front.answerer,
        default_max_tokens=config.server.default_max_tokens,
        max_request_bytes=config.server.max_request_bytes,
        embeddings=embedding_routes,
        admission=admission,
    )
    app = http.build_app(
        metrics,
        serving=lambda: not draining,
        before_scrape=front.refresher,
        dashboard=front.dashboard,
        authenticator=authenticator,
        probes=not config.server.probe_host,
        openai=openai_routes,
        max_request_bytes=config.server.max_request_bytes,
    )
    # handler_cancellation: a client that closes its connection cancels its request's work
    runner = GatewayAppRunner(app, handler_cancellation=True)  # malformed requests: a bare 400, nothing quoted
    await runner.setup()
    probes = http.build_app(metrics, lambda: not draining, before_scrape=front.refresher)
    runners = await _listen_http(config, runner, probes)
    log.info(
        "listening",
        extra={
            "grpc": address,
            "http": f"{config.server.http_host}:{config.server.http_port}",
            "model": local.model,
            "transport": describe_transport(config),
        },
    )

    await stop.wait()
    draining = True
    log.info("draining", extra={"grace_s": config.server.drain_timeout_s})
    await health_servicer.enter_graceful_shutdown()
    drain_started = loop.time()
    await servicer.drain.finish(config.server.drain_timeout_s)  # new calls: UNAVAILABLE; in-flight ones finish
    await server.stop(grace=max(0.0, config.server.drain_timeout_s - (loop.time() - drain_started)))
    for each in runners:
        await each.cleanup()
    await keys.aclose()
    if watcher is not None:
        watcher.cancel()
    await learning.aclose()
    await front.aclose()
    await local.aclose()
    if embedder is not None:
        await embedder.aclose()
    if remote is not None:
        await remote.aclose()
    for expiry in expiries:
        await expiry.aclose()
    await state.aclose()  # the ledger, cache, usage store, breaker and rate-limit state
    await loop_lag.aclose()
    await asyncio.to_thread(tracing.close)  # the spans still queued
    log.info("stopped")


async def _open_state(config: Config, opener: Callable[[Config], SharedState]) -> tuple[SharedState, KeyTable]:
    """Check the transport settings, open the shared state, read the API keys, then log the first line."""
    check_transport(config)
    state = opener(config)
    keys = KeyTable(state.keys, refresh_s=config.keys.refresh_s)
    await keys.load()
    keys.start()
    log.info(describe_mode(config, keys=keys.enabled))
    return state, keys


async def _listen_http(config: Config, runner: web.AppRunner, probes: web.Application) -> list[web.AppRunner]:
    """The HTTP port listening, and the probe port when [server] probe_host is set; the runners to clean up."""
    tls = config.server.tls
    server = config.server
    await web.TCPSite(runner, server.http_host, server.http_port, ssl_context=http_ssl_context(tls)).start()
    if not server.probe_host:
        return [runner]
    probe_runner = GatewayAppRunner(probes)  # /healthz and /metrics only, no client certificates
    await probe_runner.setup()
    ssl_context = http_ssl_context(tls, client_certificates=False)
    await web.TCPSite(probe_runner, server.probe_host, server.probe_port, ssl_context=ssl_context).start()
    return [runner, probe_runner]


async def _start_grpc(
    config: Config, servicer: InferenceGatewayServicer
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """The gRPC server with the gateway, health and reflection services, listening and SERVING."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.server.max_request_bytes),
            ("grpc.so_reuseport", 0),
            *(
                [("grpc.max_concurrent_streams", config.server.max_concurrent_streams)]
                if config.server.max_concurrent_streams
                else []
            ),
        ],
        # a backstop only: each tier's own limit (routing/admission.py) decides, so calls waiting on a slow
        # provider do not take the room of calls the local tier could answer
        maximum_concurrent_rpcs=config.server.max_concurrent_rpcs or None,
    )
    wire.add_servicer(servicer, server)  # undecodable bytes: INVALID_ARGUMENT
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{config.server.host}:{config.server.port}"
    credentials = grpc_credentials(config.server.tls)
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen on {address}; is another process using it? pass --port")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer
