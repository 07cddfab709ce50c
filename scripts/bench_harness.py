"""The benchmarks' shared harness: the servers they start, the load they send, the figures they count.

Every benchmark is its own entry point (`python scripts/<bench>.py`) and imports what it
needs from here and from benchlib (ports, pinning, waiting); nothing here imports a
benchmark, so there is no import circle. This file is also the process the harness
starts for the open-loop load generator (`--loadgen`), the OpenAI stand-in
(`--stand-in`) and the stand-in's ceiling (`--ceiling`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from benchlib import ROOT, arun, free_port, serve_command, taskset, wait_for, wait_generate

LITELLM_VENV = ROOT / ".venv-litellm"


LITELLM_SPEC = "litellm[proxy]==1.108.7"  # the release the recorded figures were taken with


REMOTE_MODEL = "gpt-test"  # the model name the stand-in is asked for


PROVIDER_KEY = "sk-bench-not-a-real-key"  # given to the gateway and LiteLLM for the stand-in


LITELLM_MASTER_KEY = "sk-bench-master-key"  # loopback only


PROMPT = "buy 100 AAPL at market"


MAX_TOKENS = 16


CALL_TIMEOUT_S = 10.0


READY_TIMEOUT_S = 180.0


DRAIN_LIMIT_S = 20.0  # a proxy still forwarding abandoned requests after this is restarted (LiteLLM)


ECHO_MODEL = "echo"  # the echo backend's model name: what an HTTP client puts in `model`


Stats = dict[str, Any]


def start_gateway(
    tmp: Path, http_port: int = 0, *, server: str = "", extra: str = "", name: str = "bench"
) -> tuple[subprocess.Popen[bytes], str]:
    """The echo gateway on core 0, serving gRPC (its target is returned) and HTTP on `http_port` (0: any).

    `server`: more lines of its [server] table; `extra`: more tables (TOML) after the rest."""
    port = free_port()
    config = tmp / f"{name}.toml"
    # Every request reaches the router (no response cache), with its own state folder.
    config.write_text(
        f'state_dir = "{tmp / (name + "-state")}"\n[local]\nbackend = "echo"\n[server]\nlog_level = "WARNING"\n'
        f"{server}[cache]\nenabled = false\n{extra}"
    )
    process = subprocess.Popen([*taskset(0), *serve_command(config, port, http_port or free_port())], cwd=ROOT)
    target = f"127.0.0.1:{port}"
    wait_ready(target, process)
    return process, target


def wait_ready(target: str, process: subprocess.Popen[bytes], model: str = "") -> Any:
    """Block until `target` answers one Generate call (pinned to `model` when given); return that answer."""
    from gateway.v1 import gateway_pb2 as pb

    return wait_generate(target, grpc_request(pb, model), process=process)


def load_in_process(
    target: str, rate: int, duration: float, pin: str = "", core: int = 1, deadline_s: float = 0.0
) -> Stats:
    """Open-loop load from its own process; `deadline_s` (0: CALL_TIMEOUT_S) is each call's deadline."""
    command = [*taskset(core), sys.executable, __file__, "--loadgen", target, str(rate), str(duration)]
    if pin:
        command += ["--pin", pin]
    if deadline_s:
        command += ["--deadline", str(deadline_s)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants (0 where /proc is missing)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo += [child for child, parent in parents.items() if parent == current]
    return total


def start_stand_in() -> tuple[subprocess.Popen[bytes], str]:
    command = [*taskset(1), sys.executable, __file__, "--stand-in"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
    stdout: IO[bytes] | None = process.stdout
    origin = stdout.readline().decode().strip() if stdout is not None else ""
    if not origin.startswith("http://"):
        process.kill()
        raise RuntimeError("the OpenAI stand-in did not start")
    return process, origin


def stand_in_count(origin: str) -> int:
    with urllib.request.urlopen(f"{origin}/bench/count", timeout=5) as response:
        return int(json.loads(response.read())["handled"])


def wait_quiet(origin: str, limit_s: float = 60.0) -> float:
    """Wait until the stand-in has received no request for 0.5 s (a saturated proxy may still be
    working through its backlog); return how long that took, minus the quiet period itself."""
    started = time.monotonic()
    last = stand_in_count(origin)
    last_change = started
    while time.monotonic() - started < limit_s:
        time.sleep(0.25)
        count = stand_in_count(origin)
        now = time.monotonic()
        if count != last:
            last, last_change = count, now
        elif now - last_change >= 0.5:
            break
    return last_change - started


def stand_in_ceiling(origin: str, duration: float = 3.0) -> Stats:
    command = [*taskset(0), sys.executable, __file__, "--ceiling", f"{origin}/v1/chat/completions", str(duration)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def start_remote_gateway(
    tmp: Path,
    origin: str,
    python_args: tuple[str, ...] = (),
    *,
    server: str = "",
    extra: str = "",
    name: str = "bench-remote",
) -> tuple[subprocess.Popen[bytes], str]:
    """The gateway with the echo local tier and one provider, `openai`, pointed at the stand-in.

    `python_args` go to the interpreter before `-m gateway` (scripts/profile_remote.py: `-m cProfile -o FILE`);
    `server`: more lines of its [server] table; `extra`: more tables (TOML) after the rest."""
    port = free_port()
    config = tmp / f"{name}.toml"
    config.write_text(
        f'state_dir = "{tmp / (name + "-state")}"\n'
        "[local]\n"
        'backend = "echo"\n'
        "[server]\n"
        'log_level = "WARNING"\n'
        f"{server}"
        "[cache]\n"
        "enabled = false\n"
        "[routing]\n"
        'escalation_order = ["openai"]\n'
        "breaker_failures = 1000000000\n"  # a pure forwarder under overload, as LiteLLM is told below
        "[providers.openai]\n"
        f'model = "{REMOTE_MODEL}"\n'
        f'base_url = "{origin}/v1"\n'
        'api_key_env = "OPENAI_API_KEY"\n'
        "daily_token_budget = 1000000000000\n"
        "requests_per_minute = 0\n"
        f"timeout_s = {CALL_TIMEOUT_S}\n"
        "max_retries = 0\n"
        "top_logprobs = 0\n"  # the direct and LiteLLM requests ask for no logprobs either
        f"{extra}"
    )
    serve = serve_command(config, port, free_port())
    command = [*taskset(0), serve[0], *python_args, *serve[1:]]
    env = {**os.environ, "OPENAI_API_KEY": PROVIDER_KEY}
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    target = f"127.0.0.1:{port}"
    answer = wait_ready(target, process, f"openai/{REMOTE_MODEL}")
    if answer.provider != "openai":
        process.terminate()
        raise RuntimeError(f"the gateway answered from {answer.provider!r}, not from the openai stand-in")
    return process, target


def ensure_litellm(spec: str) -> tuple[Path | None, str]:
    """The `litellm` command in .venv-litellm, installing it there on first use; (None, why) when unavailable."""
    binary = LITELLM_VENV / "bin" / "litellm"
    python = LITELLM_VENV / "bin" / "python"
    if not binary.exists():
        print(f"installing {spec} into {LITELLM_VENV.name} (first run only; a few minutes)", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
            pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", spec]
            subprocess.run(pip, check=True)
        except (subprocess.CalledProcessError, OSError) as exc:
            return None, f"not measured: installing {spec} failed ({exc})"
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    version = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False).stdout.strip()
    return binary, f"litellm {version or '?'} proxy, 1 worker, master key, no database"


def start_litellm(
    binary: Path, tmp: Path, origin: str, *, mock: bool = False
) -> tuple[subprocess.Popen[bytes], str] | str:
    """LiteLLM's proxy with one model routed to the stand-in (or answering from `mock_response`, its
    instant backend); its address, or why it did not start."""
    port = free_port()
    config = tmp / ("litellm-mock.yaml" if mock else "litellm.yaml")
    upstream = f"      mock_response: {PROMPT}\n" if mock else f"      api_base: {origin}/v1\n"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {REMOTE_MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{REMOTE_MODEL}\n"
        f"{upstream}"
        f"      api_key: {PROVIDER_KEY}\n"
        "litellm_settings:\n"
        "  num_retries: 0\n"
        f"  request_timeout: {CALL_TIMEOUT_S:.0f}\n"
        "  telemetry: false\n"
        "router_settings:\n"
        "  num_retries: 0\n"
        "  disable_cooldowns: true\n"  # a pure forwarder under overload, as the gateway's breaker is told
        "general_settings:\n"
        f"  master_key: {LITELLM_MASTER_KEY}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"})
    command = [*taskset(0), str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--num_workers", "1"]
    log_path = tmp / ("litellm-mock.log" if mock else "litellm.log")
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=tmp, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    body = json.dumps(chat_body()).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {LITELLM_MASTER_KEY}"}

    def answers() -> bool | None:
        try:
            request = urllib.request.Request(f"{base}/v1/chat/completions", data=body, headers=headers)
            with urllib.request.urlopen(request, timeout=5) as response:
                return True if response.status == 200 else None
        except (urllib.error.URLError, OSError):
            return None

    try:
        wait_for(answers, what="the proxy", timeout_s=READY_TIMEOUT_S, process=process, interval_s=0.5)
    except RuntimeError as exc:
        if process.poll() is None:
            process.kill()
        return f"not measured: {exc}:\n{log_path.read_text(errors='replace')[-2000:]}"
    return process, base


def grpc_request(pb: object, model: str = "") -> object:
    return pb.GenerateRequest(  # type: ignore[attr-defined]
        messages=[pb.ChatMessage(role="user", content=PROMPT)],  # type: ignore[attr-defined]
        max_tokens=MAX_TOKENS,
        model=model,
    )


def chat_body(model: str = "") -> dict[str, Any]:
    return {
        "model": model or REMOTE_MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
    }


async def load_target(target: str, rate: int, duration: float, pin: str = "", deadline_s: float = 0.0) -> Stats:
    if target.startswith("http://"):
        return await load_http(target, rate, duration, pin, deadline_s)
    return await load_grpc(target, rate, duration, pin, deadline_s)


async def load_grpc(target: str, rate: int, duration: float, pin: str, deadline_s: float = 0.0) -> Stats:
    import grpc

    from gateway.v1 import gateway_pb2 as pb
    from gateway.v1 import gateway_pb2_grpc as pb_grpc

    request = grpc_request(pb, pin)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)

        async def send() -> None:
            await stub.Generate(request, timeout=deadline_s or CALL_TIMEOUT_S)

        def describe(exc: BaseException) -> str:
            code = getattr(exc, "code", None)
            return str(code().name) if callable(code) else type(exc).__name__

        return await open_loop(send, rate, duration, (grpc.RpcError,), describe, deadline_s)


class HTTPStatusError(Exception):
    pass


async def load_http(url: str, rate: int, duration: float, model: str = "", deadline_s: float = 0.0) -> Stats:
    import aiohttp

    body = json.dumps(chat_body(model)).encode()
    # The stand-in ignores the key; LiteLLM checks it against its master key.
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {LITELLM_MASTER_KEY}"}
    timeout = aiohttp.ClientTimeout(total=deadline_s or CALL_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=0)  # open loop: a connection per request in flight, as needed
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send() -> None:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise HTTPStatusError(response.status)

        failures = (aiohttp.ClientError, TimeoutError, HTTPStatusError, OSError)
        return await open_loop(send, rate, duration, failures, describe_http_error, deadline_s)


def describe_http_error(exc: BaseException) -> str:
    if isinstance(exc, HTTPStatusError):
        return f"HTTP {exc.args[0]}"
    return "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__


async def open_loop(
    send: Callable[[], Awaitable[None]],
    rate: int,
    duration: float,
    failures: tuple[type[BaseException], ...],
    describe: Callable[[BaseException], str],
    deadline_s: float = 0.0,
) -> Stats:
    """Start one `send()` every 1/rate s regardless of answers; latency counts from the scheduled time.

    `good`: answers within `deadline_s` of their scheduled time (every answer when it is 0)."""
    latencies: list[float] = []
    error_kinds: dict[str, int] = {}

    async def one(scheduled: float) -> None:
        try:
            await send()
            latencies.append(time.perf_counter() - scheduled)
        except failures as exc:
            kind = describe(exc)
            error_kinds[kind] = error_kinds.get(kind, 0) + 1

    total = int(rate * duration)
    started = time.perf_counter()
    tasks = []
    for i in range(total):
        scheduled = started + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    stats = {"qps": len(latencies) / elapsed, "p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999)}
    good = sum(1 for x in latencies if x <= deadline_s) if deadline_s else len(latencies)
    stats.update(sent=total, answered=len(latencies), good=good, elapsed=elapsed)
    return {**stats, "errors": sum(error_kinds.values()), "error_kinds": error_kinds}


async def closed_loop(url: str, duration: float, in_flight: int = 32) -> Stats:
    """The stand-in's ceiling: `in_flight` callers, each sending its next request as soon as one returns."""
    import aiohttp

    body = json.dumps(chat_body()).encode()
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        stop_at = time.perf_counter() + duration

        async def caller() -> None:
            while (sent := time.perf_counter()) < stop_at:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                latencies.append(time.perf_counter() - sent)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000 if latencies else float("nan")
    return {"qps": len(latencies) / elapsed, "p50": p50, "in_flight": in_flight}


async def stand_in() -> None:
    """tests/fakes' OpenAI stand-in on a free loopback port; prints its origin, serves until SIGTERM.

    Adds GET /bench/count (requests answered so far) and keeps no request history."""
    import logging

    from aiohttp import web

    from tests.fakes.openai_fake import FakeOpenAI

    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # callers that gave up mid-request

    class StandIn(FakeOpenAI):
        handled = 0

        async def _handle(self, request: web.Request) -> web.StreamResponse:
            if request.path == "/bench/count":
                return web.json_response({"handled": self.handled})
            try:
                return await super()._handle(request)
            finally:
                self.seen.clear()
                self.handled += 1

    fake = StandIn()
    await fake.start()
    print(fake.origin, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await fake.stop()


# -- load by class, from several processes ----------------------------------------------------

REFUSED = ("RESOURCE_EXHAUSTED", "UNAVAILABLE", "HTTP 429", "HTTP 503")
CLASSES = ("urgent", "normal", "bulk")
PRIORITIES = {"urgent": "PRIORITY_URGENT", "normal": "PRIORITY_NORMAL", "bulk": "PRIORITY_BULK"}


def class_of(i: int, urgent_every: int, bulk_every: int) -> str:
    """The class of the i-th call of a schedule: every `urgent_every`-th URGENT, every `bulk_every`-th BULK."""
    if urgent_every and i % urgent_every == 0:
        return "urgent"
    if bulk_every and i % bulk_every == 1:
        return "bulk"
    return "normal"


def load_by_class(
    target: str,
    rate: int,
    duration: float,
    *,
    processes: int,
    deadline_s: float,
    pin: str = "",
    urgent_every: int = 10,
    bulk_every: int = 4,
    core: int | None = 1,
) -> dict[str, Stats]:
    """Open-loop gRPC load from `processes` generator processes started together, each sending every
    `processes`-th call of one shared schedule at `rate`/s; classes by `class_of`. The generators are
    pinned from `core` on, one core each while there are cores besides core 0 (the gateway's).

    Per class: sent, good (answered within `deadline_s` of its scheduled time), refused, late, p99 of the
    answers (ms), and the generators' lag (how far behind the schedule the sends started, p99 ms: when it
    nears the deadline the generators, not the gateway, are the bottleneck)."""
    start_at = time.time() + 1.0 + 0.05 * processes  # every process started and connected by then
    flags = ["--deadline", str(deadline_s), "--pin", pin, "--urgent-every", str(urgent_every)]
    flags += ["--bulk-every", str(bulk_every)]
    command = [sys.executable, __file__, "--classes", target, str(rate), str(duration), *flags]
    spare = max(1, (os.cpu_count() or 2) - 1)  # every core but the gateway's (core 0)
    shares = [["--share", f"{index}/{processes}", "--start-at", repr(start_at)] for index in range(processes)]
    pins = [[] if core is None else taskset(core + index % spare) for index in range(processes)]
    commands = [[*pin, *command, *share] for pin, share in zip(pins, shares, strict=True)]
    with tempfile.TemporaryDirectory() as folder:  # each generator's figures in a file: they are large
        outs = [Path(folder) / f"generator-{index}.json" for index in range(processes)]
        running = [subprocess.Popen([*c, "--out", str(out)], cwd=ROOT) for c, out in zip(commands, outs, strict=True)]
        for process in running:
            if process.wait() != 0:
                raise RuntimeError(f"a load generator failed (exit {process.returncode})")
        parts = [json.loads(out.read_text()) for out in outs]
    return {klass: merge_class([p[klass] for p in parts], deadline_s) for klass in CLASSES}


def merge_class(parts: list[Stats], deadline_s: float) -> Stats:
    latencies = sorted(x for p in parts for x in p["latencies"])
    lags = sorted(x for p in parts for x in p["lags"])
    kinds: dict[str, int] = {}
    for p in parts:
        for kind, n in p["error_kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + n
    sent = sum(int(p["sent"]) for p in parts)
    good = sum(1 for x in latencies if x <= deadline_s)
    refused = sum(n for kind, n in kinds.items() if kind in REFUSED)
    return {
        "sent": sent,
        "good": good,
        "refused": refused,
        "late": sent - good - refused,
        "p99": _quantile_ms(latencies, 0.99),
        "lag_p99": _quantile_ms(lags, 0.99),
        "error_kinds": kinds,
    }


def _quantile_ms(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")


async def class_load(
    target: str,
    rate: int,
    duration: float,
    *,
    deadline_s: float,
    pin: str,
    urgent_every: int,
    bulk_every: int,
    share: str,
    start_at: float,
) -> dict[str, Stats]:
    """One generator process's part of `load_by_class`: raw latencies and lags per class, for merging."""
    import grpc

    from gateway.v1 import gateway_pb2 as pb
    from gateway.v1 import gateway_pb2_grpc as pb_grpc

    index, processes = (int(x) for x in share.split("/"))
    requests = {
        klass: pb.GenerateRequest(
            messages=[pb.ChatMessage(role="user", content=PROMPT)],
            max_tokens=MAX_TOKENS,
            model=pin,
            priority=getattr(pb, PRIORITIES[klass]),
        )
        for klass in CLASSES
    }
    out: dict[str, Stats] = {k: {"sent": 0, "latencies": [], "lags": [], "error_kinds": {}} for k in CLASSES}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)

        async def one(klass: str, scheduled: float) -> None:
            mine = out[klass]
            mine["lags"].append(max(0.0, time.perf_counter() - scheduled))
            try:
                await stub.Generate(requests[klass], timeout=deadline_s)
                mine["latencies"].append(time.perf_counter() - scheduled)
            except grpc.RpcError as exc:
                code = exc.code() if callable(getattr(exc, "code", None)) else None
                kind = code.name if code is not None else type(exc).__name__
                mine["error_kinds"][kind] = mine["error_kinds"].get(kind, 0) + 1

        await channel.channel_ready()
        origin = time.perf_counter() + max(0.0, start_at - time.time())
        tasks = []
        for i in range(index, int(rate * duration), processes):
            scheduled = origin + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            klass = class_of(i, urgent_every, bulk_every)
            out[klass]["sent"] += 1
            tasks.append(asyncio.create_task(one(klass, scheduled)))
        await asyncio.gather(*tasks)
    return out


# -- the processes the harness starts ----------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loadgen", nargs=3, metavar=("TARGET", "RATE", "DURATION"))
    parser.add_argument("--classes", nargs=3, metavar=("TARGET", "RATE", "DURATION"))
    parser.add_argument("--pin", default="")
    parser.add_argument("--deadline", type=float, default=0.0)
    parser.add_argument("--urgent-every", type=int, default=10)
    parser.add_argument("--bulk-every", type=int, default=4)
    parser.add_argument("--share", default="0/1", help="INDEX/PROCESSES: this generator's calls of the schedule")
    parser.add_argument("--start-at", type=float, default=0.0, help="wall time the schedule starts")
    parser.add_argument("--out", type=Path, help="--classes: write the figures here (default: stdout)")
    parser.add_argument("--stand-in", action="store_true")
    parser.add_argument("--ceiling", nargs=2, metavar=("URL", "DURATION"))
    args = parser.parse_args()
    if args.loadgen:
        target, rate, duration = args.loadgen
        print(json.dumps(arun(load_target(target, int(rate), float(duration), args.pin, args.deadline))))
    elif args.classes:
        target, rate, duration = args.classes
        stats = class_load(
            target,
            int(rate),
            float(duration),
            deadline_s=args.deadline or CALL_TIMEOUT_S,
            pin=args.pin,
            urgent_every=args.urgent_every,
            bulk_every=args.bulk_every,
            share=args.share,
            start_at=args.start_at,
        )
        figures = json.dumps(arun(stats))
        if args.out is None:
            print(figures)
        else:
            args.out.write_text(figures)
    elif args.stand_in:
        arun(stand_in())
    elif args.ceiling:
        url, duration = args.ceiling
        print(json.dumps(arun(closed_loop(url, float(duration)))))
    else:
        parser.error("the harness runs as a process of a benchmark; run a benchmark (scripts/bench_*.py, overload.py)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
