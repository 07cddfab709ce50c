"""Command line: `serve` runs the gateway; `ask`, `models` and `usage` are gRPC clients of a running one;
`learn` reads and purges the training rows in the configured store; `keys` manages API keys."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from gateway.core import guarantee
from gateway.core.private_files import open_private
from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from local_models.adapters import LLAMACPP, MEASURED_ON_LLAMACPP, TRANSFORMERS, measure_hint

if TYPE_CHECKING:
    from gateway.config import Config

DEFAULT_TARGET = "127.0.0.1:50051"
API_KEY_ENV = "GATEWAY_API_KEY"


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    args.func(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway", description="Local-first hybrid inference gateway")
    sub = parser.add_subparsers(required=True, metavar="{serve,ask,models,usage,learn,keys}")

    serve = sub.add_parser("serve", help="run the gateway (gRPC + HTTP side port)")
    serve.add_argument("--config", type=Path, help="TOML config file (default: built-in defaults)")
    serve.add_argument("--host", help="gRPC listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="gRPC port (default 50051)")
    serve.add_argument("--http-port", type=int, help="HTTP port for /healthz and /metrics (default 8088)")
    serve.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.set_defaults(func=_serve)

    ask = sub.add_parser("ask", help="send one request to a running gateway and print the answer")
    ask.add_argument("prompt")
    ask.add_argument("--task", default="", help="task (selects the adapter), e.g. trend")
    ask.add_argument("--model", default="", help="pin a local model/adapter or 'provider/model'")
    ask.add_argument("--system", default="", help="system message")
    ask.add_argument("--max-tokens", type=int, default=0)
    ask.add_argument("--temperature", type=float, default=0.0)
    ask.add_argument("--stream", action="store_true", help="print text as it is generated")
    ask.add_argument("--local-only", action="store_true", help="never leave the box")
    ask.add_argument("--urgent", action="store_true")
    ask.add_argument("--min-confidence", type=float)
    _client_args(ask)
    ask.set_defaults(func=_ask)

    models = sub.add_parser("models", help="list local models, adapters and providers")
    _client_args(models)
    models.set_defaults(func=_models)

    usage = sub.add_parser("usage", help="print token usage per provider and requests per tier")
    usage.add_argument("--client", default="", help="only this caller's requests (API key name or certificate CN)")
    days = usage.add_mutually_exclusive_group()
    days.add_argument("--day", type=_utc_date, help="one UTC day, YYYY-MM-DD (default: today)")
    days.add_argument("--since", type=_utc_date, help="every UTC day from YYYY-MM-DD to today: one report per day")
    usage.add_argument("--json", action="store_true", help="one JSON object per day and line (keys as /api/usage)")
    _client_args(usage)
    usage.set_defaults(func=_usage)

    learn = sub.add_parser("learn", help="training rows kept from escalated requests: status, export, purge")
    learn_sub = learn.add_subparsers(required=True, metavar="{status,export,purge}")
    status = learn_sub.add_parser("status", help="rows per task, label balance and date range")
    status.set_defaults(func=_learn_status)
    export = learn_sub.add_parser("export", help="one task's rows as the JSONL `python -m finetune --data` reads")
    export.add_argument("--task", required=True)
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    export.set_defaults(func=_learn_export)
    purge = learn_sub.add_parser("purge", help="delete training rows")
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", help="delete this task's rows")
    which.add_argument("--all", action="store_true", help="delete every task's rows")
    purge.set_defaults(func=_learn_purge)
    for command in (status, export, purge):
        command.add_argument("--config", type=Path, help="TOML config file (the gateway's; default: built-in defaults)")

    _keys_parser(sub)
    return parser


def _keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="API keys: create, list, revoke (docs/security.md)")
    keys_sub = keys.add_subparsers(required=True, metavar="{create,list,revoke}")
    create = keys_sub.add_parser("create", help="make a key and print it once (only its hash is stored)")
    create.add_argument("name", help="who the key is for; usage records and the dashboard show this name")
    create.add_argument("--tasks", nargs="+", default=[], metavar="TASK", help="the only tasks it may ask")
    create.add_argument("--local-only", action="store_true", help="never a remote call, whatever the request says")
    create.add_argument("--daily-tokens", type=int, default=0, help="tokens per UTC day (0 = no quota)")
    create.add_argument("--rpm", type=int, default=0, help="requests per minute (0 = no limit)")
    create.add_argument("--admin", action="store_true", help="may read the dashboard and everyone's usage")
    create.set_defaults(func=_keys_create)
    listing = keys_sub.add_parser("list", help="the keys' names and policies (never the keys)")
    listing.add_argument("--revoked", action="store_true", help="include revoked keys")
    listing.set_defaults(func=_keys_list)
    revoke = keys_sub.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("name")
    revoke.set_defaults(func=_keys_revoke)
    for command in (create, listing, revoke):
        command.add_argument("--config", type=Path, help="TOML config file (the gateway's; default: built-in defaults)")


def _client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=DEFAULT_TARGET, help=f"gateway address (default {DEFAULT_TARGET})")
    parser.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV, ""), help=f"API key (default: ${API_KEY_ENV})")
    parser.add_argument("--ca-file", type=Path, help="connect with TLS, trusting this CA's PEM certificate")
    parser.add_argument("--cert-file", type=Path, help="client certificate (PEM) for mutual TLS")
    parser.add_argument("--key-file", type=Path, help="private key (PEM) of --cert-file")


def _serve(args: argparse.Namespace) -> None:
    from gateway.app.server import serve
    from gateway.config import ConfigError, load_config
    from gateway.observe.logs import setup_logging

    overrides = {
        "server.host": args.host,
        "server.port": args.port,
        "server.http_port": args.http_port,
        "server.log_level": args.log_level,
    }
    try:
        config = load_config(args.config, os.environ, overrides)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    setup_logging(config.server.log_level)
    try:
        _run(serve(config))
    except (OSError, ConfigError) as exc:
        sys.exit(f"error: {exc}")


def _config(args: argparse.Namespace) -> Config:
    from gateway.config import ConfigError, load_config

    try:
        return load_config(args.config, os.environ, {})
    except ConfigError as exc:
        sys.exit(f"error: {exc}")


def _learn_status(args: argparse.Namespace) -> None:
    from gateway.app import learn

    _run(learn.status(_config(args), sys.stdout))


def _learn_export(args: argparse.Namespace) -> None:
    from gateway.app import learn

    config = _config(args)
    if args.out is None:
        _run(learn.export(config, args.task, sys.stdout))
        return
    with open_private(args.out) as out:  # training rows hold prompt text: owner-only
        _run(learn.export(config, args.task, out))
    print(f"wrote {args.out}", file=sys.stderr)


def _learn_purge(args: argparse.Namespace) -> None:
    from gateway.app import learn

    _run(learn.purge(_config(args), None if args.all else args.task, sys.stdout))


def _keys_create(args: argparse.Namespace) -> None:
    from gateway.app import keys

    try:
        _run(
            keys.create(
                _config(args),
                args.name,
                sys.stdout,
                tasks=args.tasks,
                local_only=args.local_only,
                daily_tokens=args.daily_tokens,
                rpm=args.rpm,
                admin=args.admin,
            )
        )
    except keys.KeyCommandError as exc:
        sys.exit(f"error: {exc}")
    print("the key is shown once: store it now (only its hash is kept)", file=sys.stderr)


def _keys_list(args: argparse.Namespace) -> None:
    from gateway.app import keys

    _run(keys.list_keys(_config(args), sys.stdout, revoked=args.revoked))


def _keys_revoke(args: argparse.Namespace) -> None:
    from gateway.app import keys

    try:
        _run(keys.revoke(_config(args), args.name, sys.stdout))
    except keys.KeyCommandError as exc:
        sys.exit(f"error: {exc}")


def _run(coro: object) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]
    else:
        uvloop.run(coro)  # type: ignore[arg-type]


def _stub(args: argparse.Namespace) -> tuple[grpc.Channel, pb_grpc.InferenceGatewayStub]:
    if args.ca_file is None:
        channel = grpc.insecure_channel(args.target)
    else:
        cert = args.cert_file.read_bytes() if args.cert_file else None
        key = args.key_file.read_bytes() if args.key_file else None
        credentials = grpc.ssl_channel_credentials(args.ca_file.read_bytes(), key, cert)
        channel = grpc.secure_channel(args.target, credentials)
    if args.api_key:
        channel = grpc.intercept_channel(channel, _BearerInterceptor(args.api_key))
    return channel, pb_grpc.InferenceGatewayStub(channel)


class _BearerInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds `authorization: Bearer <key>` to every call."""

    def __init__(self, key: str) -> None:
        self._metadata = (("authorization", f"Bearer {key}"),)

    def _with_key(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(
            details.method, details.timeout, (*(details.metadata or ()), *self._metadata), details.credentials
        )

    def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with_key(details), request)

    def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with_key(details), request)


def _ask(args: argparse.Namespace) -> None:
    messages = [pb.ChatMessage(role="system", content=args.system)] if args.system else []
    messages.append(pb.ChatMessage(role="user", content=args.prompt))
    request = pb.GenerateRequest(
        messages=messages,
        task=args.task,
        model=args.model,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        privacy=pb.PRIVACY_LOCAL_ONLY if args.local_only else pb.PRIVACY_DEFAULT,
        priority=pb.PRIORITY_URGENT if args.urgent else pb.PRIORITY_NORMAL,
    )
    if args.min_confidence is not None:
        request.min_confidence = args.min_confidence
    channel, stub = _stub(args)
    with channel:
        try:
            if args.stream:
                final = None
                for chunk in stub.GenerateStream(request, timeout=args.timeout):
                    if chunk.HasField("final"):
                        final = chunk.final
                    else:
                        print(chunk.text, end="", flush=True)
                print()
                if final is None:
                    sys.exit("error: the stream ended without its final chunk")
                response = final
            else:
                response = stub.Generate(request, timeout=args.timeout)
                print(response.text)
        except grpc.RpcError as exc:
            sys.exit(f"error: {exc.code().name}: {exc.details()}")
    confidence = f"{response.confidence:.3f}" if response.HasField("confidence") else "n/a"
    print(
        f"-- tier={pb.Tier.Name(response.tier)} provider={response.provider} model={response.model} "
        f"confidence={confidence} escalation={pb.Escalation.Name(response.escalation)} "
        f"tokens={response.usage.prompt_tokens}+{response.usage.completion_tokens} latency={response.latency_ms:.1f}ms",
        file=sys.stderr,
    )


def _models(args: argparse.Namespace) -> None:
    channel, stub = _stub(args)
    with channel:
        try:
            response = stub.ListModels(pb.ListModelsRequest(), timeout=args.timeout)
        except grpc.RpcError as exc:
            sys.exit(f"error: {exc.code().name}: {exc.details()}")
    print(format_models(response))


def format_models(response: pb.ListModelsResponse) -> str:
    """One line per model; under each adapter, what its threshold promises (or that it promises nothing)."""
    lines = []
    for m in response.models:
        shown = {k: v for k, v in m.metrics.items() if not k.startswith("guarantee_") and k != MEASURED_ON_LLAMACPP}
        metrics = " ".join(
            "threshold=none" if k == "threshold" and v > 1.0 else f"{k}={v:.3g}" for k, v in sorted(shown.items())
        )
        lines.append(f"{m.name:<32} {pb.Tier.Name(m.tier):<12} {m.provider:<14} {m.task:<16} {metrics}".rstrip())
        if m.tier == pb.TIER_LOCAL and m.task:
            lines.append(f"    {_promise(m)}")
            lines.extend(f"    {line}" for line in _measured(m))
    return "\n".join(lines)


def _measured(m: pb.ModelInfo) -> list[str]:
    """A line when the adapter's card was measured on another inference path than the backend serving it."""
    measured = LLAMACPP if m.metrics.get(MEASURED_ON_LLAMACPP) else TRANSFORMERS
    if m.provider not in (TRANSFORMERS, LLAMACPP) or measured == m.provider:
        return []
    return [
        f"measured on {measured}, served by {m.provider}: the threshold and calibration come from {measured}'s "
        f"confidences (agreement: docs/local_backends.md); {measure_hint(m.task, m.provider)}"
    ]


def _promise(m: pb.ModelInfo) -> str:
    """What the threshold of an adapter guarantees, from the figures its card put in its metrics."""
    in_force = m.metrics.get("threshold", math.nan)
    promised = guarantee.from_figures(m.metrics)
    if promised is None:
        return (
            f"threshold {in_force:.3f} is a point estimate without a guarantee (a card from before guarantees); "
            f"re-run `python -m finetune --tasks {m.task}` for one"
        )
    line = promised.describe()
    if promised.supported and in_force > promised.threshold:
        line += f"; raised by the live audit to {in_force:.3f}"
    return line


def _utc_date(text: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD (UTC)") from None


def _usage(args: argparse.Namespace) -> None:
    """One report per day: --since runs from that day to today (UTC), oldest first; percentiles do not add up."""
    today = datetime.now(UTC).date()
    if args.since is not None and args.since > today:
        sys.exit(f"error: --since {args.since} is after today ({today}, UTC)")
    first = args.since or args.day
    count = (today - first).days + 1 if args.since is not None else 1
    days = [""] if first is None else [(first + timedelta(days=n)).isoformat() for n in range(count)]
    channel, stub = _stub(args)
    with channel:
        for n, day in enumerate(days):
            try:
                response = stub.GetUsage(pb.GetUsageRequest(client=args.client, day=day), timeout=args.timeout)
            except grpc.RpcError as exc:
                sys.exit(f"error: {exc.code().name}: {exc.details()}")
            if args.json:
                print(json.dumps(usage_json(response, args.client), separators=(",", ":")), flush=True)
            else:
                print(("\n" if n else "") + format_usage(response, args.client), flush=True)


def usage_json(u: pb.GetUsageResponse, client: str = "") -> dict[str, Any]:
    """GetUsage's figures under the keys the dashboard's /api/usage uses (stable: scripts read them)."""
    return {
        "day": u.day,
        "client": client,
        "requests": u.requests,
        "requests_by_tier": dict(sorted(u.requests_by_tier.items())),
        "requests_by_provider": dict(sorted(u.requests_by_provider.items())),
        "escalations_by_reason": dict(sorted(u.escalations_by_reason.items())),
        "tokens_by_tier": dict(sorted(u.tokens_by_tier.items())),
        "cached_prompt_tokens": u.cached_prompt_tokens,
        "cache_write_tokens": u.cache_write_tokens,
        "providers": [
            {
                "provider": p.provider,
                "tokens_used": p.tokens_used,
                "token_budget": p.token_budget,
                "requests": p.requests,
            }
            for p in u.providers
        ],
        "latency_ms": {
            "count": u.latency.count,
            "p50": u.latency.p50_ms,
            "p90": u.latency.p90_ms,
            "p99": u.latency.p99_ms,
            "max": u.latency.max_ms,
        },
        "cost_usd": u.cost_usd,
        "reference_cost_usd": u.reference_cost_usd,
        "saved_usd": u.saved_usd,
        "reference_provider": u.reference_provider,
        "local_accuracy": [
            {
                "task": a.task,
                "audited": a.audited,
                "agreed": a.agreed,
                "estimate": None if math.isnan(a.estimate) or not a.audited else a.estimate,
                "low": a.low,
                "high": a.high,
                "threshold": a.threshold,
                "target": a.target,
            }
            for a in u.local_accuracy
        ],
    }


def format_usage(u: pb.GetUsageResponse, client: str = "") -> str:
    """The figures the dashboard shows, as plain tables (same numbers, same rounding)."""
    lines = [f"day {u.day or '-'} (UTC), all replicas sharing the usage store: {u.requests} requests"]
    if client:
        lines[0] += f" from client '{client}' (provider budgets: every client)"
    lines += ["", f"{'provider':<14} {'used':>10} {'budget':>10} {'left':>10} {'requests':>9}"]
    for p in u.providers:
        budget = str(p.token_budget) if p.token_budget else "no limit"
        left = str(max(p.token_budget - p.tokens_used, 0)) if p.token_budget else "-"
        lines.append(f"{p.provider:<14} {p.tokens_used:>10} {budget:>10} {left:>10} {p.requests:>9}")
    if not u.providers:
        lines.append("(no providers configured: local only)")
    lines += ["", f"{'tier':<14} {'requests':>10} {'share':>10} {'tokens':>10}"]
    for tier in ("local", "cache", "remote"):
        count = u.requests_by_tier.get(tier, 0)
        share = f"{100 * count / u.requests:.1f}%" if u.requests else "0.0%"
        lines.append(f"{tier:<14} {count:>10} {share:>10} {u.tokens_by_tier.get(tier, 0):>10}")
    if u.cached_prompt_tokens or u.cache_write_tokens:
        lines.append(
            f"provider prompt caches: {u.cached_prompt_tokens} prompt tokens read, {u.cache_write_tokens} written "
            "(billed at the providers' cache rates: docs/cost.md)"
        )
    lines.append("")
    escalations = ", ".join(f"{k}={v}" for k, v in sorted(u.escalations_by_reason.items())) or "none"
    lines.append(f"escalations: {escalations}")
    lat = u.latency
    lines.append(f"latency ms: p50 {lat.p50_ms:.2f}  p90 {lat.p90_ms:.2f}  p99 {lat.p99_ms:.2f}  max {lat.max_ms:.2f}")
    reference = u.reference_provider or "(no usage.reference_provider set)"
    lines.append(
        f"cost: spent ${u.cost_usd:.4f}  at {reference} prices ${u.reference_cost_usd:.4f}  saved ${u.saved_usd:.4f}"
    )
    if u.local_accuracy:
        lines += [
            "",
            f"{'live accuracy':<14} {'audited':>8} {'agreed':>8} {'estimate':>9} {'95% bounds':>14} threshold",
        ]
        for a in u.local_accuracy:
            estimate = f"{a.estimate:.3f}" if a.audited else "-"
            flag = "  below target" if a.audited and a.high < a.target else ""
            lines.append(
                f"{a.task:<14} {a.audited:>8} {a.agreed:>8} {estimate:>9} {f'{a.low:.3f}-{a.high:.3f}':>14} "
                f"{a.threshold:.3f} (target {a.target:.2f}){flag}"
            )
    return "\n".join(lines)


class _CallDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(
        self, method: str, timeout: float | None, metadata: tuple[tuple[str, str], ...], credentials: object
    ) -> None:
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = None
        self.compression = None
