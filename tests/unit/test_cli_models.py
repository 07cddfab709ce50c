"""`python -m gateway models`: under each adapter, what its threshold guarantees, that it escalates
everything, or that its card predates guarantees."""

from __future__ import annotations

from gateway.cli import format_models
from gateway.core.guarantee import choose_threshold
from gateway.v1 import gateway_pb2 as pb

SUPPORTED = choose_threshold([0.99] * 100 + [0.5] * 100, [True] * 100 + [False] * 100, target=0.95)
NONE = choose_threshold([0.99] * 40, [True] * 40, target=0.95)  # 40 rows cannot show 0.95


def adapter(name: str, task: str, metrics: dict[str, float]) -> pb.ModelInfo:
    return pb.ModelInfo(name=name, tier=pb.TIER_LOCAL, provider="transformers", task=task, metrics=metrics)


def test_each_adapter_says_what_its_threshold_promises() -> None:
    response = pb.ListModelsResponse(
        models=[
            pb.ModelInfo(name="smollm2", tier=pb.TIER_LOCAL, provider="transformers"),
            adapter("trend-lora", "trend", {"accuracy": 0.94, "threshold": 0.99, **SUPPORTED.figures()}),
            adapter("audited-lora", "drawdown", {**SUPPORTED.figures(), "threshold": 0.995}),
            adapter("pattern-lora", "pattern", {"threshold": NONE.threshold, **NONE.figures()}),
            adapter("old-lora", "volatility", {"accuracy": 0.9, "threshold": 0.87}),
            pb.ModelInfo(name="openai/gpt-test", tier=pb.TIER_REMOTE, provider="openai"),
        ]
    )
    lines = format_models(response).splitlines()
    assert lines[0].split() == ["smollm2", "TIER_LOCAL", "transformers"]  # the base model: no promise line
    assert lines[1].split()[-2:] == ["accuracy=0.94", "threshold=0.99"]  # the guarantee's figures are not repeated
    assert lines[2] == (
        "    threshold 0.990: kept accuracy >= 0.95 at 95% confidence "
        "(lower bound 0.970 on 100 of 200 validation rows kept, coverage 50%)"
    )
    assert lines[4].endswith("; raised by the live audit to 0.995")
    assert lines[5].split()[-1] == "threshold=none"
    assert lines[6] == (
        "    no threshold supported: escalates everything "
        "(no kept set of the 40 validation rows has accuracy >= 0.95 at 95% confidence)"
    )
    assert lines[8] == (
        "    threshold 0.870 is a point estimate without a guarantee (a card from before guarantees); "
        "re-run `python -m finetune --tasks volatility` for one"
    )
    assert lines[9].split() == ["openai/gpt-test", "TIER_REMOTE", "openai"]
    assert len(lines) == 10
