"""The learning loop end to end: day 1 escalates and is captured, finetune learns from it, day 2 stays local.

    python scripts/learning_loop.py [--day1 240] [--day2 120] [--budget 8m] [--workdir DIR] [--smoke]

A real gateway (the embedded model in process, no sentiment adapter yet) serves the
`sentiment` task with `learn = true`; its remote tier is a teacher stand-in that speaks
the OpenAI wire format and answers each headline with its gold label
(tests/fakes/teacher.py; the commercial API cannot be reached here). The headlines are
the project's labelled set (finetune/data/sentiment_headlines.jsonl), shuffled with a
seed and cut into two days that share no headline.

- Day 1: the day-1 headlines go through the gateway; what escalates is captured.
- `python -m finetune --from-traffic --tasks sentiment` trains on those rows and publishes
  the adapter (no champion yet); the gateway's adapter watcher picks it up.
- Day 2: the day-2 headlines go through.

Per day it prints the escalated share, the accuracy of the answers kept locally (against
the gold labels), the tokens the remote tier spent (escalations and audits, from GetUsage)
and what they would cost at the configured price. Design target: the escalated share at
least halves from day 1 to day 2 while kept answers stay at or above 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import ROOT, load_average

SYSTEM = "Answer with one word: bullish, bearish or neutral."
PRICE_IN, PRICE_OUT = 2.5, 10.0  # $ per million tokens, the gpt-4o list price, for "what it would cost"
CONFIG = """
[local]
backend = "transformers"

[adapters]
dir = "{adapters}"
watch_s = 1

[routing]
escalation_order = ["openai"]

[tasks.sentiment]
labels = ["bullish", "bearish", "neutral"]
system_prompt = "{system}"
min_confidence = 0.95
learn = true

[learning]
audit_rate = {audit_rate}

[providers.openai]
model = "teacher"
base_url = "{base_url}"
api_key_env = "OPENAI_API_KEY"
daily_token_budget = 1000000
max_retries = 0
price_in_per_mtok = {price_in}
price_out_per_mtok = {price_out}
"""


@dataclass(frozen=True)
class Day:
    name: str
    requests: int
    escalated: int
    kept: int
    kept_correct: int
    tokens: int

    @property
    def escalated_share(self) -> float:
        return self.escalated / self.requests if self.requests else 0.0

    @property
    def kept_accuracy(self) -> float:
        return self.kept_correct / self.kept if self.kept else float("nan")

    def row(self) -> str:
        cost = self.tokens * (PRICE_IN + PRICE_OUT) / 2 / 1e6  # blended: prompts dominate, replies are one word
        return (
            f"| {self.name} | {self.requests} | {self.escalated} ({self.escalated_share:.0%}) | {self.kept} | "
            f"{self.kept_accuracy:.3f} | {self.tokens} | ${cost:.4f} |"
        )


LABELS = ("bullish", "bearish", "neutral")


class Loop:
    """The gateway under test, driven over gRPC, and the retraining between the days."""

    def __init__(self, stub: Any, gold: dict[str, str], workdir: Path, env: dict[str, str]) -> None:
        self._stub = stub
        self._gold = gold
        self._workdir = workdir
        self._env = env

    def tokens_used(self) -> int:
        from gateway.v1 import gateway_pb2 as pb

        usage = self._stub.GetUsage(pb.GetUsageRequest(), timeout=30)
        return sum(p.tokens_used for p in usage.providers)

    def ask(self, headline: str) -> tuple[bool, bool]:
        """(kept locally, and right) for one headline."""
        from gateway.core.confidence import choose_label
        from gateway.v1 import gateway_pb2 as pb

        message = pb.ChatMessage(role="user", content=headline)
        request = pb.GenerateRequest(messages=[message], task="sentiment", max_tokens=4, bypass_cache=True)
        reply = self._stub.Generate(request, timeout=300)
        local = reply.tier == pb.TIER_LOCAL
        return local, local and choose_label(reply.text, LABELS) == self._gold[headline]

    def day(self, name: str, headlines: list[str]) -> Day:
        before, started = self.tokens_used(), time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(self.ask, headlines))
        kept = sum(1 for local, _ in answers if local)
        right = sum(1 for _, ok in answers if ok)
        day = Day(name, len(headlines), len(headlines) - kept, kept, right, self.tokens_used() - before)
        print(f"{name}: {time.perf_counter() - started:.0f} s\n{day.row()}", flush=True)
        return day

    def retrain(self, budget: str, *, smoke: bool) -> int:
        command = [sys.executable, "-m", "finetune", "--from-traffic", "--tasks", "sentiment"]
        command += ["--gateway-config", str(self._workdir / "gateway.toml")]
        command += ["--artifacts", str(self._workdir / "artifacts"), "--adapters-dir", str(self._workdir / "adapters")]
        command += ["--budget", budget, "--min-kept", "5", "--no-progress", *(["--smoke"] if smoke else [])]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=self._env, capture_output=True, text=True, check=False)
        print(done.stdout.strip(), flush=True)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
        print(f"finetune --from-traffic: {time.perf_counter() - started:.0f} s", flush=True)
        return done.returncode

    def wait_serving(self) -> None:
        from gateway.v1 import gateway_pb2 as pb
        from tests.waiting import wait_until

        def serving() -> bool:
            models = self._stub.ListModels(pb.ListModelsRequest(), timeout=30).models
            return any(m.task == "sentiment" for m in models)

        wait_until(serving, timeout_s=60, what="the gateway to serve the new sentiment adapter")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sys.path.insert(0, str(ROOT))  # the gateway and the stand-ins under tests/ come from this checkout
    import grpc

    from gateway.v1 import gateway_pb2_grpc as pb_grpc
    from tests.fakes.providers import TEST_KEYS
    from tests.fakes.teacher import TeacherOpenAI
    from tests.fakes.threaded import serving_in_thread
    from tests.gateway_process import start_gateway

    rows = [json.loads(x) for x in (ROOT / "finetune/data/sentiment_headlines.jsonl").read_text().splitlines()]
    random.Random(args.seed).shuffle(rows)
    day1 = [row["prompt"] for row in rows[: args.day1]]
    day2 = [row["prompt"] for row in rows[args.day1 : args.day1 + args.day2]]
    gold = {row["prompt"]: row["label"] for row in rows}
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="learning-loop-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"workdir {workdir}; load average {load_average()}", flush=True)
    env = {**os.environ, **TEST_KEYS, "GATEWAY__LEARNING__PATH": str(workdir / "learning.sqlite3")}
    with serving_in_thread(TeacherOpenAI(answers=gold)) as teacher:
        config = CONFIG.format(
            adapters=workdir / "adapters",
            system=SYSTEM,
            audit_rate=args.audit_rate,
            base_url=teacher.base_url,  # type: ignore[attr-defined]
            price_in=PRICE_IN,
            price_out=PRICE_OUT,
        )
        gateway = start_gateway(config, workdir, env=TEST_KEYS)
        try:
            with grpc.insecure_channel(gateway.target) as channel:
                loop = Loop(pb_grpc.InferenceGatewayStub(channel), gold, workdir, env)
                first = loop.day("day 1", day1)
                if loop.retrain(args.budget, smoke=args.smoke) != 0:
                    return 1
                loop.wait_serving()
                second = loop.day("day 2", day2)
        finally:
            gateway.stop()
    print("\n| day | requests | escalated | kept locally | accuracy of kept | remote tokens | at $2.5/$10 per Mtok |")
    print("|---|---|---|---|---|---|---|")
    print(f"{first.row()}\n{second.row()}")
    halved = second.escalated_share <= first.escalated_share / 2
    verdict = "at least halved" if halved else "NOT halved"
    print(
        f"\nescalated share {first.escalated_share:.0%} -> {second.escalated_share:.0%} ({verdict}); "
        f"load average {load_average()}"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--day1", type=int, default=240, help="headlines on day 1 (default %(default)s)")
    p.add_argument("--day2", type=int, default=120, help="headlines on day 2, none of day 1's (default %(default)s)")
    p.add_argument("--budget", default="8m", help="finetune's budget between the days (default %(default)s)")
    p.add_argument("--audit-rate", type=float, default=0.1, help="share of confident local answers audited")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="", help="default: a new temporary folder")
    p.add_argument("--smoke", action="store_true", help="finetune --smoke: checks the loop runs, learns nothing")
    return p


if __name__ == "__main__":
    raise SystemExit(main())
