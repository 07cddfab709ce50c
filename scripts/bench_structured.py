"""Structured answers on the embedded model: constrained decoding against asking nicely.

The llama.cpp backend (xllamacpp, the shipped GGUF file) answers the same trading prompts twice:

- constrained: the call carries a ResponseFormat with the trading schema, so llama.cpp decodes
  under the schema's grammar (what the gateway sends for an OpenAI `response_format` json_schema);
- unconstrained: the same prompts with the schema spelled out in the instructions, and no
  ResponseFormat (what a client gets from a backend that cannot constrain).

For each: the share of answers that parse as JSON, the share that validate against the schema
(gateway/core/structured.py, the gateway's own check), the latency p50/p95 per answer, and the
mean confidence of the valid ones (as routing scores a structured answer: the token quantile of
its values' tokens and the signal's renormalised probability, the lower of the two).
Prompts run --concurrency at a time. Asserts nothing.

    python scripts/bench_structured.py [--prompts 40] [--max-tokens 96] [--concurrency 4] [--threads 2]
        [--llamacpp-model FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import load_average

from gateway.core import structured
from gateway.core.contracts import BackendCall, LocalBackend, Message, ResponseFormat, Role

TRADE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "signal": {"type": "string", "enum": ["buy", "sell", "hold"]},
        "size": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string", "maxLength": 120},
    },
    "required": ["signal", "size", "reason"],
    "additionalProperties": False,
}
TRADE = ResponseFormat(structured.canonical(TRADE_SCHEMA), "trade", strict=True)
SYSTEM = "You are a trading assistant. Answer with one JSON object only."
SPELLED = (
    ' Answer exactly as {"signal": "buy" | "sell" | "hold", "size": a number from 0 to 1, '
    '"reason": a short sentence}, and nothing else.'
)
ASSETS = ("BTC", "ETH", "SOL", "AAPL", "TSLA", "NVDA", "EUR/USD", "gold", "oil", "SPY")
MOVES = (
    "fell 3% today on heavy volume",
    "rose 5% after earnings beat expectations",
    "has traded flat for two weeks",
    "broke above its 200-day moving average",
    "dropped below key support after a downgrade",
)


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    seconds: float
    parses: bool
    valid: bool
    confidence: float | None


def prompts(count: int) -> list[str]:
    return [f"{ASSETS[i % len(ASSETS)]} {MOVES[(i // len(ASSETS)) % len(MOVES)]}. Signal?" for i in range(count)]


def call(index: int, prompt: str, *, constrained: bool, max_tokens: int) -> BackendCall:
    user = prompt if constrained else prompt + SPELLED
    return BackendCall(
        request_id=f"bench-{index}",
        messages=(Message(Role.SYSTEM, SYSTEM), Message(Role.USER, user)),
        max_tokens=max_tokens,
        response_format=TRADE if constrained else None,
    )


async def answer(backend: LocalBackend, the_call: BackendCall, quantile: float) -> Answer:
    started = time.perf_counter()
    completion = await backend.generate(the_call)
    seconds = time.perf_counter() - started
    text = completion.text.strip()
    try:
        json.loads(text)
        parses = True
    except ValueError:
        parses = False
    valid = parses and structured.problem(text, TRADE) is None
    # scored as routing scores a structured answer (core/structured.py: its values' tokens, the signal's choice)
    score = structured.answer_confidence(text, completion.tokens, TRADE, quantile) if valid else None
    return Answer(text, seconds, parses, valid, score)


async def run(backend: LocalBackend, texts: list[str], args: argparse.Namespace, *, constrained: bool) -> list[Answer]:
    gate = asyncio.Semaphore(args.concurrency)

    async def one(index: int, prompt: str) -> Answer:
        async with gate:
            return await answer(
                backend, call(index, prompt, constrained=constrained, max_tokens=args.max_tokens), args.quantile
            )

    return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(texts))))


def summary(name: str, answers: list[Answer]) -> dict[str, Any]:
    seconds = sorted(a.seconds for a in answers)
    scores = [a.confidence for a in answers if a.confidence is not None]
    return {
        "mode": name,
        "answers": len(answers),
        "parses": sum(a.parses for a in answers) / len(answers),
        "valid": sum(a.valid for a in answers) / len(answers),
        "p50_ms": statistics.median(seconds) * 1000,
        "p95_ms": seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))] * 1000,
        "mean_confidence_valid": statistics.fmean(scores) if scores else None,
        "example": answers[0].text[:160],
    }


def build(args: argparse.Namespace) -> LocalBackend:
    from local_models.llamacpp_backend import LlamaCppBackend, LlamaCppSettings
    from local_models.model_store import EMBEDDED_NAME, find_gguf

    settings = LlamaCppSettings(
        args.llamacpp_model or find_gguf(),
        EMBEDDED_NAME,
        Path.home() / ".cache" / "trading-gateway" / "llamacpp-adapters",
        slots=max(args.concurrency, 1),
        threads=args.threads,
        batch_threads=args.threads,
    )
    return LlamaCppBackend(settings)


async def main_async(args: argparse.Namespace) -> None:
    backend = await asyncio.to_thread(build, args)
    texts = prompts(args.prompts)
    try:
        print(f"load average before: {load_average()}")
        rows = []
        for constrained in (True, False):
            name = "constrained" if constrained else "unconstrained"
            rows.append(summary(name, await run(backend, texts, args, constrained=constrained)))
        print(f"load average after: {load_average()}")
    finally:
        await backend.aclose()
    for row in rows:
        confidence_text = "-" if row["mean_confidence_valid"] is None else f"{row['mean_confidence_valid']:.3f}"
        print(
            f"{row['mode']:>13}: {row['answers']} answers, JSON {row['parses']:.0%}, valid {row['valid']:.0%}, "
            f"p50 {row['p50_ms']:.0f} ms, p95 {row['p95_ms']:.0f} ms, mean confidence (valid) {confidence_text}"
        )
        print(f"{'':>13}  e.g. {row['example']!r}")
    print(json.dumps({"schema": TRADE_SCHEMA, "results": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=40, help="trading prompts per mode")
    parser.add_argument("--max-tokens", type=int, default=96, help="max_tokens of each answer")
    parser.add_argument("--concurrency", type=int, default=4, help="answers generated at once")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument("--quantile", type=float, default=0.1, help="the token quantile of the confidence")
    parser.add_argument("--llamacpp-model", type=Path, help="a GGUF file (default: the shipped Q4_1 file)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
