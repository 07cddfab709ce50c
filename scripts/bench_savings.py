"""Fewer paid tokens per answer: a mixed trading workload replayed before and after, and each mechanism's share.

The same workload (seeded) goes through a gateway process five times, each run adding one
mechanism to the one before:

  1. baseline         nothing: the response cache off, no provider prompt caching, no compaction
  2. + exact cache    [cache] enabled: repeats answered from the cache
  3. + semantic cache [cache.semantic] and the tasks' semantic_cache: paraphrases answered too
                      (skipped, and said so, when this gateway has no semantic cache: see
                      `semantic_cache_available`, the hook for it)
  4. + prompt caching the provider caches the long system prompts (Anthropic: cache_control;
                      OpenAI: the stand-in's implicit caching, as the API does it)
  5. + compaction     [tasks.*] compact_prompt: the new turn compacted losslessly

The workload: questions on tickers and price levels, in four kinds: fresh questions,
exact repeats of earlier ones, paraphrases of earlier ones (same ticker, level and
direction in other words), and near-misses of earlier ones (the direction, ticker or level
changed: they must never be answered from a cache). Half go to a task whose system prompt
is a long desk policy; half carry a pasted context (indented JSON, prices with trailing
zeros, stray whitespace) as clients send it. Every request is escalated to the provider
stand-in (tests/fakes, in this process), so the local tier never answers.

Prints, per run: remote tokens per request (every prompt and completion token providers
processed), of which read from a provider's prompt cache, and billed-equivalent tokens
per request (cache reads and writes at the provider's price ratios, gateway/observe/pricing.py),
cache hits by workload kind, and wrong hits (near-misses answered from a cache: must be 0).
Then each mechanism's share of the saving in billed-equivalent tokens.

Token counts are the stand-ins' (one token per word, 3 per message), not a real tokenizer's,
and the answers are the stand-in's. `--agreement N` measures how often a compacted prompt's answer
agrees with the uncompacted one's on a real model, the embedded one (docs/cost.md).

    .venv/bin/python scripts/bench_savings.py --requests 2000                  # the real run
    .venv/bin/python scripts/bench_savings.py --requests 40 --provider openai  # smoke
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import CacheConfig, TaskConfig  # noqa: E402
from gateway.observe.pricing import cache_ratios  # noqa: E402
from gateway.v1 import gateway_pb2 as pb  # noqa: E402
from gateway.v1 import gateway_pb2_grpc as pb_grpc  # noqa: E402
from tests.fakes.anthropic_fake import FakeAnthropic  # noqa: E402
from tests.fakes.base import FakeProviderServer  # noqa: E402
from tests.fakes.openai_fake import FakeOpenAI  # noqa: E402
from tests.fakes.providers import KINDS, TEST_KEYS, base_url  # noqa: E402
from tests.fakes.threaded import serving_in_thread  # noqa: E402
from tests.gateway_process import start_gateway  # noqa: E402

TICKERS = ("BTC", "ETH", "SOL", "AAPL", "NVDA", "TSLA", "EURUSD", "GOLD")
DIRECTIONS = {"above": "below", "below": "above", "up": "down", "down": "up"}
ASK = {
    "above": ("Is {t} trading above {p}?", "Is {t} currently above the {p} level?", "Has {t} moved above {p}?"),
    "below": ("Is {t} trading below {p}?", "Is {t} currently under the {p} level?", "Has {t} dropped below {p}?"),
    "up": ("Is {t} up today versus {p}?", "Has {t} gained today from {p}?", "Is {t} higher today than {p}?"),
    "down": ("Is {t} down today versus {p}?", "Has {t} lost ground today from {p}?", "Is {t} lower today than {p}?"),
}
SHORT_SYSTEM = "You are a trading desk assistant. Answer yes or no, then one short reason."
KINDS_OF_REQUEST = ("fresh", "repeat", "paraphrase", "near_miss")
STEPS = ("baseline", "+ exact cache", "+ semantic cache", "+ prompt caching", "+ compaction")


@dataclass(frozen=True)
class Ask:
    ticker: str
    level: int
    direction: str
    wording: int  # which of ASK[direction]'s phrasings
    long_system: bool
    context: bool

    def text(self) -> str:
        question = ASK[self.direction][self.wording].format(t=self.ticker, p=f"{self.level:,}")
        if not self.context:
            return question
        return f"{question}\n\n{pasted_context(self.ticker, self.level)}\n\nThanks in advance!"


@dataclass(frozen=True)
class Item:
    kind: str  # fresh | repeat | paraphrase | near_miss
    ask: Ask


def long_system_prompt() -> str:
    """A desk policy of about 1,500 words: the long, stable prefix providers can cache."""
    rules = [
        f"Rule {i}: when the {topic} signal disagrees with the trend on the {frame} chart, say so, name the "
        f"level that would settle it, and never recommend a position size above the desk limit for {asset}."
        for i, (topic, frame, asset) in enumerate(
            (t, f, a)
            for t in ("momentum", "volume", "funding", "breadth", "volatility")
            for f in ("hourly", "four-hour", "daily", "weekly")
            for a in ("crypto", "equities", "FX", "commodities")
        )
    ]
    return "You are the trading desk's assistant. Follow the desk policy below.\n\n" + "\n".join(rules)


def pasted_context(ticker: str, level: int) -> str:
    """What a client pastes: indented JSON, prices with trailing zeros, stray whitespace."""
    quote = {"symbol": ticker, "last": f"{level * 1.01:.6f}", "bid": level * 0.995, "levels": [level, level * 2]}
    return "Context:   latest quote   below\n" + json.dumps(quote, indent=4) + f"\nprev close   {level:.4f}   "


def workload(n: int, seed: int) -> list[Item]:
    rng = random.Random(seed)
    items: list[Item] = []
    asked: list[Ask] = []
    weights = (0.35, 0.25, 0.20, 0.20)
    for _ in range(n):
        kind = rng.choices(KINDS_OF_REQUEST, weights)[0] if asked else "fresh"
        if kind == "fresh":
            ask = Ask(
                rng.choice(TICKERS),
                rng.randrange(10, 1000) * 100,
                rng.choice(tuple(ASK)),
                0,
                rng.random() < 0.5,
                rng.random() < 0.5,
            )
        else:
            earlier = rng.choice(asked)
            if kind == "repeat":
                ask = earlier
            elif kind == "paraphrase":
                ask = Ask(**{**earlier.__dict__, "wording": 1 + rng.randrange(2)})
            else:
                change = rng.choice(("direction", "ticker", "level"))
                if change == "direction":
                    ask = Ask(**{**earlier.__dict__, "direction": DIRECTIONS[earlier.direction]})
                elif change == "ticker":
                    other = rng.choice([t for t in TICKERS if t != earlier.ticker])
                    ask = Ask(**{**earlier.__dict__, "ticker": other})
                else:
                    ask = Ask(**{**earlier.__dict__, "level": earlier.level + 100 * rng.randrange(1, 20)})
        asked.append(ask)
        items.append(Item(kind, ask))
    return items


def semantic_cache_available() -> bool:
    """The hook for the semantic cache: whether this gateway's config has it ([cache.semantic] and the tasks'
    semantic_cache). When it does not, step 3 is skipped and its share is reported as not measured."""
    return "semantic" in CacheConfig.model_fields and "semantic_cache" in TaskConfig.model_fields


@dataclass(frozen=True)
class Step:
    name: str
    exact_cache: bool = False
    semantic_cache: bool = False
    prompt_caching: bool = False
    compaction: bool = False


def steps(semantic: bool) -> list[Step]:
    out = [
        Step(STEPS[0]),
        Step(STEPS[1], exact_cache=True),
        Step(STEPS[2], exact_cache=True, semantic_cache=True),
        Step(STEPS[3], exact_cache=True, semantic_cache=True, prompt_caching=True),
        Step(STEPS[4], exact_cache=True, semantic_cache=True, prompt_caching=True, compaction=True),
    ]
    if not semantic:
        out = [replace_semantic(s) for s in out if s.name != STEPS[2]]
    return out


def replace_semantic(step: Step) -> Step:
    return Step(step.name, step.exact_cache, False, step.prompt_caching, step.compaction)


def config(step: Step, provider: str, origin: str) -> str:
    lines = [
        "[server]",
        "default_max_tokens = 16",
        "[local]",
        'backend = "echo"',
        "[cache]",
        f"enabled = {str(step.exact_cache).lower()}",
    ]
    if step.semantic_cache:
        lines += ["[cache.semantic]", "enabled = true"]
    lines += [
        "[routing]",
        f'escalation_order = ["{provider}"]',
        "[[routing.rules]]",
        'match_tag = { route = "remote" }',
    ]
    lines += ["escalate = true"]
    for task, system in (("desk", SHORT_SYSTEM), ("desk_long", long_system_prompt())):
        lines += [f"[tasks.{task}]", f"system_prompt = {json.dumps(system)}"]
        lines += [f"compact_prompt = {str(step.compaction).lower()}"]
        if step.semantic_cache:
            lines.append("semantic_cache = true")
    lines += [f"[providers.{provider}]", f'model = "{KINDS[provider].model}"', f'base_url = "{origin}"']
    lines += ["max_retries = 0", "timeout_s = 20"]
    if provider == "anthropic":
        lines += [f"prompt_cache = {str(step.prompt_caching).lower()}", "prompt_cache_min_chars = 2000"]
    return "\n".join(lines) + "\n"


def stand_in(provider: str, step: Step) -> FakeProviderServer:
    if provider == "anthropic":
        return FakeAnthropic()  # caches only what the gateway marks with cache_control
    return FakeOpenAI(prompt_cache_min=1024 if step.prompt_caching else 0)  # implicit: on or off by step


@dataclass
class Tally:
    requests: int = 0
    remote_calls: int = 0
    tokens: int = 0  # every prompt and completion token providers processed
    cached: int = 0
    written: int = 0
    billed: float = 0.0  # billed-equivalent tokens
    hits: Counter[str] = field(default_factory=Counter)
    wrong_hits: int = 0
    failures: int = 0


@contextmanager
def gateway_for(step: Step, provider: str, workdir: Path) -> Iterator[tuple[pb_grpc.InferenceGatewayStub, str]]:
    with serving_in_thread(stand_in(provider, step)) as fake:
        text = config(step, provider, base_url(fake))
        process = start_gateway(text, workdir, env=TEST_KEYS, ready_timeout_s=300)
        try:
            with grpc.insecure_channel(process.target) as channel:
                yield pb_grpc.InferenceGatewayStub(channel), provider
        finally:
            process.stop()


def replay(step: Step, items: list[Item], provider: str, workdir: Path) -> Tally:
    read, write = cache_ratios(provider)
    tally = Tally()
    with gateway_for(step, provider, workdir) as (stub, _):
        for index, item in enumerate(items):
            request = pb.GenerateRequest(
                request_id=f"r{index}",
                messages=[pb.ChatMessage(role="user", content=item.ask.text())],
                task="desk_long" if item.ask.long_system else "desk",
                tags={"route": "remote"},
            )
            try:
                reply = stub.Generate(request, timeout=30)
            except grpc.RpcError as exc:
                tally.failures += 1
                print(f"  {step.name}: request {index} failed: {exc.code().name}", file=sys.stderr)
                continue
            tally.requests += 1
            if reply.tier == pb.TIER_CACHE:
                tally.hits[item.kind] += 1
                tally.wrong_hits += item.kind == "near_miss" and _answered_before_differently(item, items[:index])
                continue
            usage = reply.usage
            tally.remote_calls += 1
            tally.tokens += usage.prompt_tokens + usage.completion_tokens
            tally.cached += usage.cached_prompt_tokens
            tally.written += usage.cache_write_tokens
            fresh = usage.prompt_tokens - usage.cached_prompt_tokens - usage.cache_write_tokens
            prompt = fresh + usage.cached_prompt_tokens * read + usage.cache_write_tokens * write
            tally.billed += prompt + usage.completion_tokens
    return tally


def _answered_before_differently(item: Item, earlier: list[Item]) -> bool:
    """A near-miss answered from a cache is wrong unless the very same question was asked before."""
    same = (item.ask.ticker, item.ask.level, item.ask.direction)
    return not any((e.ask.ticker, e.ask.level, e.ask.direction) == same for e in earlier)


def report(results: list[tuple[Step, Tally]], items: list[Item], semantic: bool) -> None:
    kinds = Counter(item.kind for item in items)
    print(f"workload: {len(items)} requests: " + ", ".join(f"{k} {kinds[k]}" for k in KINDS_OF_REQUEST))
    head = f"{'run':<18} {'remote':>7} {'tok/req':>9} {'cached/req':>11} {'billed/req':>11} {'hits r/p/n':>12}"
    print(head + f" {'wrong hits':>10} {'failed':>7}")
    for step, t in results:
        n = max(t.requests, 1)
        hits = f"{t.hits['repeat']}/{t.hits['paraphrase']}/{t.hits['near_miss']}"
        print(
            f"{step.name:<18} {t.remote_calls:>7} {t.tokens / n:>9.1f} {t.cached / n:>11.1f} {t.billed / n:>11.1f} "
            f"{hits:>12} {t.wrong_hits:>10} {t.failures:>7}"
        )
    first, last = results[0][1], results[-1][1]
    before, after = first.billed / max(first.requests, 1), last.billed / max(last.requests, 1)
    saved = before - after
    print(f"\nbilled-equivalent tokens per request: {before:.1f} before, {after:.1f} after ({saved:.1f} saved)")
    print("each mechanism's share of the saving:")
    for (_, prev), (step, t) in itertools.pairwise(results):
        delta = prev.billed / max(prev.requests, 1) - t.billed / max(t.requests, 1)
        share = 100 * delta / saved if saved else 0.0
        print(f"  {step.name[2:]:<16} {delta:>9.1f} tokens/request  {share:>5.1f}%")
    if not semantic:
        why = "--no-semantic" if semantic_cache_available() else "this gateway has no semantic cache"
        print(f"  semantic cache   not measured: {why} (semantic_cache_available is the hook)")


def compaction_report(items: list[Item], tokenizer_path: Path | None) -> None:
    """Tokens compaction saves per task on this workload's prompts, counted by a real BPE tokenizer when one is
    at hand (the local model's), else by characters / 4."""
    from gateway.core.contracts import BackendCall, Message, Role
    from gateway.remote.compaction import compact_call

    count = _token_counter(tokenizer_path)
    by_task: dict[str, list[tuple[int, int, int]]] = {}
    for item in items:
        task, system = ("desk_long", long_system_prompt()) if item.ask.long_system else ("desk", SHORT_SYSTEM)
        call = BackendCall("r", (Message(Role.SYSTEM, system), Message(Role.USER, item.ask.text())), 16)
        compacted = compact_call(call).call
        turn_before, turn_after = count(call.messages[-1].content), count(compacted.messages[-1].content)
        assert compacted.messages[0] == call.messages[0]  # the cached prefix is never touched
        by_task.setdefault(task, []).append((turn_before, turn_after, count(system)))
    unit = "tokens" if tokenizer_path else "~tokens (chars/4)"
    print(f"\ncompaction, per task ({unit}; the system prompt is never compacted):")
    for task, rows in sorted(by_task.items()):
        before = sum(r[0] for r in rows) / len(rows)
        after = sum(r[1] for r in rows) / len(rows)
        whole = sum(r[0] + r[2] for r in rows) / len(rows)
        turn, prompt = 100 * (before - after) / max(before, 1), 100 * (before - after) / whole
        print(
            f"  {task:<10} new turn {before:>7.1f} -> {after:>7.1f} per request "
            f"({turn:.1f}% of the turn, {prompt:.1f}% of the prompt)"
        )


def agreement_report(items: list[Item], limit: int, threads: int) -> None:
    """How often compaction leaves the answer as it was: the embedded model (llama.cpp, the shipped GGUF,
    greedy) answers each distinct prompt that compaction changes twice, as sent and compacted. A small model
    is more sensitive to formatting than a commercial one, so this is a conservative reading. The short system
    prompt is used for every prompt (the long one does not fit the embedded model's context; compaction never
    touches it anyway)."""
    import asyncio

    from gateway.core.contracts import BackendCall, Message, Role
    from gateway.remote.compaction import compact_call
    from local_models.llamacpp_backend import LlamaCppBackend, LlamaCppSettings
    from local_models.model_store import EMBEDDED_NAME, find_gguf

    calls: list[tuple[BackendCall, BackendCall]] = []
    seen: set[str] = set()
    for item in items:
        text = item.ask.text()
        if text in seen:
            continue
        seen.add(text)
        call = BackendCall(f"a{len(calls)}", (Message(Role.SYSTEM, SHORT_SYSTEM), Message(Role.USER, text)), 24)
        compacted = compact_call(call).call
        if compacted.messages != call.messages:
            calls.append((call, compacted))
        if len(calls) >= limit:
            break

    async def answers() -> list[tuple[str, str]]:
        settings = LlamaCppSettings(
            find_gguf(),
            EMBEDDED_NAME,
            Path(tempfile.gettempdir()) / "bench-savings-adapters",
            slots=1,
            threads=threads,
            batch_threads=threads,
        )
        backend = await asyncio.to_thread(LlamaCppBackend, settings)
        try:
            out = []
            for call, compacted in calls:
                first = await backend.generate(call)
                second = await backend.generate(compacted)
                out.append((first.text.strip(), second.text.strip()))
            return out
        finally:
            await backend.aclose()

    pairs = asyncio.run(answers())
    if not pairs:
        print("\ncompaction agreement: no prompt in the workload is changed by compaction")
        return
    same = sum(a == b for a, b in pairs)
    first_word = sum(_first_word(a) == _first_word(b) for a, b in pairs)
    print(
        f"\ncompaction agreement on the embedded model (greedy, {len(pairs)} distinct prompts compaction changes): "
        f"same answer {same}/{len(pairs)} ({100 * same / len(pairs):.0f}%), same first word (yes/no) "
        f"{first_word}/{len(pairs)} ({100 * first_word / len(pairs):.0f}%)"
    )


def _first_word(text: str) -> str:
    words = text.lower().replace(",", " ").replace(".", " ").split()
    return words[0] if words else ""


def _token_counter(path: Path | None) -> Callable[[str], int]:
    if path is None:
        return lambda text: max(1, round(len(text) / 4))
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def default_tokenizer() -> Path | None:
    """The local model's tokenizer (byte-level BPE, which counts whitespace as real tokenizers do), if downloaded."""
    found = sorted((Path.home() / ".cache" / "trading-gateway" / "models").glob("*/tokenizer.json"))
    return found[0] if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests in the workload")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--provider", choices=("anthropic", "openai"), default="anthropic")
    parser.add_argument("--no-semantic", action="store_true", help="skip the semantic cache step")
    parser.add_argument("--tokenizer", type=Path, default=default_tokenizer(), help="tokenizer.json for compaction")
    parser.add_argument(
        "--agreement", type=int, default=0, help="answer this many compacted prompts both ways on the embedded model"
    )
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads for --agreement")
    args = parser.parse_args()
    items = workload(args.requests, args.seed)
    semantic = semantic_cache_available() and not args.no_semantic
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-savings-") as tmp:
        for index, step in enumerate(steps(semantic)):
            workdir = Path(tmp) / f"run{index}"
            workdir.mkdir()
            print(f"running {step.name} ...", file=sys.stderr)
            results.append((step, replay(step, items, args.provider, workdir)))
    report(results, items, semantic)
    compaction_report(items, args.tokenizer)
    if args.agreement:
        agreement_report(items, args.agreement, args.threads)


if __name__ == "__main__":
    main()
