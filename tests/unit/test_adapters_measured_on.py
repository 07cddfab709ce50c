"""Which inference path a card was measured on: recorded on the card, old cards mean transformers, and a
card served by the other path is served with a warning once (and `gateway models` says so)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import format_models
from gateway.v1 import gateway_pb2 as pb
from local_models.adapters import (
    CARD_FILE,
    LLAMACPP,
    MEASURED_ON_LLAMACPP,
    TRANSFORMERS,
    AdapterCardError,
    AdapterRegistry,
    MeasuredOn,
    read_card,
)
from tests.unit.test_adapters import card, publish

ON_LLAMACPP = MeasuredOn(LLAMACPP, "SmolLM2-135M-Instruct.Q4_1.gguf", "c" * 64)


def test_a_card_says_which_path_measured_it_and_an_old_card_means_transformers(tmp_path: Path) -> None:
    folder = publish(tmp_path, card("20261126-010000", measured_on=ON_LLAMACPP))
    loaded = read_card(folder)
    assert loaded.measured_on == ON_LLAMACPP
    assert json.loads((folder / CARD_FILE).read_text())["measured_on"]["path"] == "llamacpp"
    assert loaded.task_spec(folder).metrics[MEASURED_ON_LLAMACPP] == 1.0

    old = publish(tmp_path, card("20261126-020000", task="drawdown"))
    data = json.loads((old / CARD_FILE).read_text())
    del data["measured_on"]  # as cards were written before the llama.cpp path
    (old / CARD_FILE).write_text(json.dumps(data))
    assert read_card(old).measured_on == MeasuredOn(TRANSFORMERS)
    assert MEASURED_ON_LLAMACPP not in read_card(old).task_spec(old).metrics


def test_an_unknown_path_is_refused() -> None:
    with pytest.raises(AdapterCardError, match=r"measured_on\.path"):
        card(measured_on=MeasuredOn("vllm")).validate()


@pytest.mark.parametrize(("served_by", "warned"), [("llamacpp", ["trend"]), ("transformers", ["drawdown"]), ("", [])])
def test_a_card_measured_on_the_other_path_is_served_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, served_by: str, warned: list[str]
) -> None:
    publish(tmp_path, card("20261126-010000", task="trend"))  # measured on transformers
    publish(tmp_path, card("20261126-010000", task="drawdown", measured_on=ON_LLAMACPP))
    registry = AdapterRegistry(tmp_path, base_sha256=None, served_by=served_by)
    registry.refresh()
    registry.refresh()  # the same files: no second warning
    assert {spec.name for spec in registry.all()} == {"trend", "drawdown"}  # served all the same
    lines = [r.getMessage() for r in caplog.records if "were measured on" in r.getMessage()]
    assert [line.split("@")[0].removeprefix("adapter ") for line in lines] == warned
    if warned:
        assert "served as it is" in lines[0] and "python -m finetune " in lines[0]


def local(provider: str, task: str, metrics: dict[str, float]) -> pb.ModelInfo:
    return pb.ModelInfo(name=f"{task}-lora", tier=pb.TIER_LOCAL, provider=provider, task=task, metrics=metrics)


def test_gateway_models_says_when_the_card_was_measured_on_another_path() -> None:
    measured_on_llamacpp = {"threshold": 0.9, MEASURED_ON_LLAMACPP: 1.0}
    response = pb.ListModelsResponse(
        models=[
            local("llamacpp", "trend", {"threshold": 0.9}),  # an old card: transformers
            local("llamacpp", "drawdown", measured_on_llamacpp),
            local("transformers", "volume", measured_on_llamacpp),
            local("transformers", "sentiment", {"threshold": 0.9}),
            local("vllm", "regime", {"threshold": 0.9}),  # not a measured path: nothing to compare
        ]
    )
    text = format_models(response)
    assert MEASURED_ON_LLAMACPP not in text  # the flag is said in words, not listed as a figure
    notes = [line.strip() for line in text.splitlines() if line.strip().startswith("measured on")]
    assert notes == [
        "measured on transformers, served by llamacpp: the threshold and calibration come from transformers's "
        "confidences (agreement: docs/local_backends.md); re-measure it there: "
        "python -m finetune remeasure --tasks trend",
        "measured on llamacpp, served by transformers: the threshold and calibration come from llamacpp's "
        "confidences (agreement: docs/local_backends.md); train it again, measured on transformers: "
        "python -m finetune --tasks volume",
    ]
