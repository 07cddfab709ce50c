"""vLLM through the gateway vs direct, and the in-process transformers backend vs vLLM (`make bench-vllm`).

Part 1: one vLLM server (started here, or --base-url) and one gateway process configured with
backend = "vllm" in front of it. At each concurrency level (default 1, 4, 16 streams) every stream
sends --requests streaming requests per round, in --rounds rounds with the two sides alternating
(A B B A), with the same prompts and settings both ways: directly to vLLM's /v1/chat/completions (SSE,
logprobs, top_logprobs=5, as the backend asks) and through the gateway's GenerateStream (gRPC, cache
bypassed). Reported per side: requests, output
tokens/s, time to first token p50/p99, request latency p50/p99, and the ratio gateway/direct.

Part 2: the same prompts through the backends themselves, in this process: the in-process
transformers backend (embedded SmolLM2, fp32, micro-batched) and the vLLM backend (vLLM CPU build,
bf16), at the same levels, alternating in rounds like part 1 (each idles while the other runs).

Figures are appended to docs/benchmarks.md under "## vLLM" (--no-write to only print).

    python scripts/bench_vllm.py [--levels 1 4 16] [--requests 1] [--rounds 2] [--max-tokens 32]
        [--base-url URL] [--dtype bfloat16|auto] [--card NAME] [--skip-transformers] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import ROOT, free_port, load_average, serve_command, wait_serving

PROMPTS = (
    "Summarise in one sentence: AAPL rose 2% after earnings beat estimates.",
    "Is a 20-day moving average above the 50-day bullish or bearish? One sentence.",
    "Explain what a stop-loss order does, briefly.",
    "Name two risks of holding a leveraged ETF overnight.",
)
SERVED_NAME = "smollm2"


@dataclass(frozen=True)
class Sample:
    ttft_s: float
    latency_s: float
    tokens: int


@dataclass(frozen=True)
class Row:
    side: str
    level: int
    samples: tuple[Sample, ...]
    wall_s: float

    @property
    def tokens_per_s(self) -> float:
        return sum(s.tokens for s in self.samples) / self.wall_s

    def pct(self, field: str, q: float) -> float:
        values = sorted(getattr(s, field) for s in self.samples)
        return float(values[min(len(values) - 1, round(q * (len(values) - 1)))])


# -- load ---------------------------------------------------------------------------------------


async def run_level(side: str, level: int, requests: int, one: Callable[[str], Awaitable[Sample]]) -> Row:
    async def stream(index: int) -> list[Sample]:
        return [await one(PROMPTS[(index + i) % len(PROMPTS)]) for i in range(requests)]

    started = time.perf_counter()
    results = await asyncio.gather(*(stream(i) for i in range(level)))
    wall = time.perf_counter() - started
    return Row(side, level, tuple(s for batch in results for s in batch), wall)


def direct_caller(base_url: str, max_tokens: int) -> tuple[Callable[[str], Awaitable[Sample]], Any]:
    import httpx

    client = httpx.AsyncClient(base_url=base_url, timeout=600, limits=httpx.Limits(max_connections=64))

    async def one(prompt: str) -> Sample:
        body = {
            "model": SERVED_NAME,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": 5,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        started = time.perf_counter()
        first = 0.0
        tokens = 0
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data:") or line.strip() == "data: [DONE]":
                    continue
                chunk = json.loads(line[5:])
                if not first and any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or ()):
                    first = time.perf_counter() - started
                if chunk.get("usage"):
                    tokens = int(chunk["usage"]["completion_tokens"])
        return Sample(first, time.perf_counter() - started, tokens)

    return one, client.aclose


def gateway_caller(target: str, max_tokens: int) -> tuple[Callable[[str], Awaitable[Sample]], Any]:
    import grpc

    from gateway.v1 import gateway_pb2 as pb
    from gateway.v1 import gateway_pb2_grpc as pb_grpc

    channel = grpc.aio.insecure_channel(target)
    stub = pb_grpc.InferenceGatewayStub(channel)

    async def one(prompt: str) -> Sample:
        request = pb.GenerateRequest(
            messages=[pb.ChatMessage(role="user", content=prompt)],
            max_tokens=max_tokens,
            temperature=0.0,
            bypass_cache=True,
            privacy=pb.PRIVACY_LOCAL_ONLY,
        )
        started = time.perf_counter()
        first = 0.0
        tokens = 0
        async for chunk in stub.GenerateStream(request, timeout=600):
            if chunk.text and not first:
                first = time.perf_counter() - started
            if chunk.HasField("final"):
                tokens = chunk.final.usage.completion_tokens
        return Sample(first, time.perf_counter() - started, tokens)

    return one, channel.close


def backend_caller(backend: Any, max_tokens: int) -> Callable[[str], Awaitable[Sample]]:
    from gateway.core.contracts import BackendCall, Completion, Delta, Message, Role

    async def one(prompt: str) -> Sample:
        call = BackendCall("bench", (Message(Role.USER, prompt),), max_tokens=max_tokens)
        started = time.perf_counter()
        first = 0.0
        tokens = 0
        events: AsyncIterator[Any] = backend.stream(call)
        async for event in events:
            if isinstance(event, Delta) and not first:
                first = time.perf_counter() - started
            elif isinstance(event, Completion):
                tokens = event.usage.completion_tokens
        return Sample(first, time.perf_counter() - started, tokens)

    return one


# -- processes ------------------------------------------------------------------------------------


def start_vllm(args: argparse.Namespace, workdir: Path) -> Any:
    from local_models.model_store import ensure_embedded_model
    from local_models.vllm_server import VllmLaunch, VllmSupervisor, find_vllm_python

    port = free_port()
    launch = VllmLaunch(
        python=find_vllm_python("", os.environ, ROOT),
        model_dir=str(ensure_embedded_model(Path.home() / ".cache" / "trading-gateway")),
        served_model_name=SERVED_NAME,
        port=port,
        dtype=args.dtype,
    )
    print(f"starting vLLM: {launch.describe()}", flush=True)
    supervisor = VllmSupervisor(launch, log_path=workdir / "vllm.log", startup_timeout_s=900)
    started = time.perf_counter()
    supervisor.start()
    print(f"vLLM healthy in {time.perf_counter() - started:.0f} s", flush=True)
    return supervisor, launch.base_url


def start_gateway(base_url: str, max_tokens: int, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port, http_port = free_port(), free_port()
    config = workdir / "gateway.toml"
    config.write_text(
        f'offline = true\ncache_dir = "{workdir / "cache"}"\n[server]\ndefault_max_tokens = {max_tokens}\n'
        f'log_level = "WARNING"\n[local]\nbackend = "vllm"\n[local.vllm]\nbase_url = "{base_url}"\n'
        f'served_model_name = "{SERVED_NAME}"\n'
    )
    log = (workdir / "gateway.log").open("wb")
    process = subprocess.Popen(serve_command(config, port, http_port), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    target = f"127.0.0.1:{port}"
    wait_serving(target, process=process)
    return process, target


# -- the run ----------------------------------------------------------------------------------------


async def alternate(sides: dict[str, Callable[[str], Awaitable[Sample]]], args: argparse.Namespace) -> list[Row]:
    """Each level: `rounds` rounds with the two sides alternating (A B B A ...), samples merged per side."""
    (a, first), (b, second) = sides.items()
    await first(PROMPTS[0])  # warm-up: neither side pays first-request costs in the figures
    await second(PROMPTS[0])
    rows: list[Row] = []
    for level in args.levels:
        runs: dict[str, list[Row]] = {a: [], b: []}
        for round_ in range(args.rounds):  # a slow drift of the shared machine hits both sides alike
            order = [(a, first), (b, second)]
            for side, one in order if round_ % 2 == 0 else order[::-1]:
                runs[side].append(await run_level(side, level, args.requests, one))
        for side, parts in runs.items():
            row = Row(side, level, tuple(x for r in parts for x in r.samples), sum(r.wall_s for r in parts))
            print(describe(row), flush=True)
            rows.append(row)
    return rows


async def part_gateway(args: argparse.Namespace, base_url: str, target: str) -> list[Row]:
    direct, close_direct = direct_caller(base_url, args.max_tokens)
    through, close_gateway = gateway_caller(target, args.max_tokens)
    try:
        return await alternate({"direct": direct, "gateway": through}, args)
    finally:
        await close_direct()
        await close_gateway()


async def part_backends(args: argparse.Namespace, vllm: Any, transformers: Any) -> list[Row]:
    """The two backends in this process; each idles (no CPU) while the other runs."""
    try:
        sides = {
            "vllm": backend_caller(vllm, args.max_tokens),
            "transformers": backend_caller(transformers, args.max_tokens),
        }
        return await alternate(sides, args)
    finally:
        await vllm.aclose()
        await transformers.aclose()


def describe(row: Row) -> str:
    return (
        f"{row.side:>12} x{row.level:<3} {len(row.samples):>3} req  {row.tokens_per_s:7.1f} tok/s  "
        f"TTFT p50 {row.pct('ttft_s', 0.5) * 1000:7.0f} ms p99 {row.pct('ttft_s', 0.99) * 1000:7.0f} ms  "
        f"latency p50 {row.pct('latency_s', 0.5):6.2f} s p99 {row.pct('latency_s', 0.99):6.2f} s"
    )


def markdown(
    args: argparse.Namespace, gateway_rows: list[Row], backend_rows: list[Row], started: str, load_at_start: str
) -> str:
    card = args.card or f"CPU only ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    lines = [
        "",
        "## vLLM",
        "",
        f"Run {started} on {card}; load average at the end {load_average(one_minute=True)} (shared machine).",
        f"SmolLM2-135M-Instruct, {args.max_tokens} output tokens max, greedy, streaming; at each level every stream "
        f"sends {args.requests} request(s) per round, {args.rounds} rounds with direct and gateway alternating "
        f"(A B B A); dtype {args.dtype}. Load average at the start {load_at_start}. The CPU build binds vLLM's "
        "engine to one core; the gateway and the load generator share the other.",
        "",
        "### Through the gateway vs direct to vLLM",
        "",
        "| streams | direct tok/s | gateway tok/s | ratio | direct TTFT p50/p99 ms | gateway TTFT p50/p99 ms "
        "| direct latency p50/p99 s | gateway latency p50/p99 s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for level in args.levels:
        d = next(r for r in gateway_rows if r.side == "direct" and r.level == level)
        g = next(r for r in gateway_rows if r.side == "gateway" and r.level == level)
        lines.append(
            f"| {level} | {d.tokens_per_s:.1f} | {g.tokens_per_s:.1f} | {g.tokens_per_s / d.tokens_per_s:.2f} "
            f"| {_ms(d, 'ttft_s')} | {_ms(g, 'ttft_s')} | {_s(d)} | {_s(g)} |"
        )
    if backend_rows:
        lines += [
            "",
            "### In-process transformers backend vs vLLM backend (same prompts)",
            "",
            "| streams | backend | tok/s | TTFT p50/p99 ms | latency p50/p99 s |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.level} | {r.side} | {r.tokens_per_s:.1f} | {_ms(r, 'ttft_s')} | {_s(r)} |"
            for r in sorted(backend_rows, key=lambda r: (r.level, r.side))
        ]
    return "\n".join(lines) + "\n"


def _ms(row: Row, field: str) -> str:
    return f"{row.pct(field, 0.5) * 1000:.0f} / {row.pct(field, 0.99) * 1000:.0f}"


def _s(row: Row) -> str:
    return f"{row.pct('latency_s', 0.5):.2f} / {row.pct('latency_s', 0.99):.2f}"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=1, help="requests per stream in each round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per level, direct and gateway alternating")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--base-url", help="an already running vLLM serving 'smollm2' (default: start one)")
    parser.add_argument("--dtype", default="bfloat16", help="bfloat16 on CPU, auto on GPUs")
    parser.add_argument("--card", default="", help="the accelerator, e.g. 'NVIDIA H100 80GB HBM3'")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to docs/benchmarks.md")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_at_start = load_average(one_minute=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-vllm-"))
    supervisor = None
    base_url = args.base_url
    if base_url is None:
        supervisor, base_url = start_vllm(args, workdir)
    gateway, target = start_gateway(base_url, args.max_tokens, workdir)
    backend_rows: list[Row] = []
    try:
        gateway_rows = asyncio.run(part_gateway(args, base_url, target))
        gateway.terminate()
        gateway.wait(30)
        if not args.skip_transformers:
            from local_models.vllm_backend import VllmBackend, VllmSettings

            vllm = VllmBackend(VllmSettings(base_url=base_url, model=SERVED_NAME, timeout_s=600))
            backend_rows = asyncio.run(part_backends(args, vllm, transformers_backend()))
    finally:
        if gateway.poll() is None:
            gateway.terminate()
            gateway.wait(30)
        if supervisor is not None:
            supervisor.stop()
    text = markdown(args, gateway_rows, backend_rows, started, load_at_start)
    print(text)
    if not args.no_write:
        out = ROOT / "docs" / "benchmarks.md"
        out.parent.mkdir(exist_ok=True)
        existing = out.read_text() if out.exists() else "# Benchmarks\n"
        out.write_text(existing.rstrip("\n") + "\n" + text)
        print(f"appended to {out}")


def transformers_backend() -> Any:
    from local_models.model_store import EMBEDDED_NAME, ensure_embedded_model
    from local_models.transformers_backend import TransformersBackend, TransformersSettings

    model_dir = ensure_embedded_model(Path.home() / ".cache" / "trading-gateway")
    return TransformersBackend(TransformersSettings(model_dir=model_dir, model_name=EMBEDDED_NAME, max_batch=16))


if __name__ == "__main__":
    main()
