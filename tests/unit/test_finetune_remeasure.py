"""`python -m finetune remeasure`: a trained adapter measured on the llama.cpp path gets a new card whose
temperature, threshold, guarantee and figures are what the llama.cpp backend answers on the same rows."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("xllamacpp")

from finetune.__main__ import main, options_from, parser
from finetune.evaluate.calibrate import fit_temperature
from finetune.examples import TEST, VAL
from finetune.task_run import load_dataset, run_task
from finetune.train.distributed import make_accelerator
from gateway.core.confidence import choose_label, label_probabilities, score
from gateway.core.contracts import AdapterRef, BackendCall, Completion, Message, Role
from gateway.core.guarantee import choose_threshold
from local_models.adapters import AdapterCard, AdapterRegistry, MeasuredOn, read_card
from local_models.gguf_lora import GGUF_ADAPTER_FILE
from local_models.model_store import EMBEDDED_NAME, find_gguf


@pytest.fixture(scope="module")
def remeasured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    """A smoke-trained trend adapter (transformers card), and the version `remeasure` published from it."""
    artifacts = tmp_path_factory.mktemp("artifacts")
    argv = ["--smoke", "--tasks", "trend", "--artifacts", str(artifacts), "--no-progress"]
    _, options, budget, _ = options_from(parser().parse_args(argv), {"HOME": str(Path.home())})
    outcome = run_task("trend", options, budget, artifacts / "runs" / "smoke", make_accelerator())
    assert outcome is not None and outcome.adapter_dir is not None
    trained = outcome.adapter_dir
    assert main(["remeasure", *argv]) == 0
    registry = AdapterRegistry(options.adapters, base_sha256=None)
    registry.refresh()
    spec = registry.get("trend")
    assert spec is not None and spec.adapter is not None
    return trained, Path(spec.adapter.path), options


async def answers(card: AdapterCard, folder: Path, splits: list[list[Any]], cache: Path) -> list[list[Completion]]:
    """Each split's rows asked of the llama.cpp backend as the gateway asks them: the card's prompt, labels, adapter."""
    from local_models.llamacpp_backend import LlamaCppBackend, LlamaCppSettings

    ref = AdapterRef(card.name, card.version, str(folder))
    backend = await asyncio.to_thread(LlamaCppBackend, LlamaCppSettings(find_gguf(), EMBEDDED_NAME, cache))
    try:
        out = []
        for rows in splits:
            calls = [
                BackendCall(
                    f"row-{i}",
                    (
                        Message(Role.SYSTEM, card.prompt.system),
                        Message(Role.USER, card.prompt.user.replace("{input}", x)),
                    ),
                    8,
                    adapter=ref,
                    labels=card.labels,
                )
                for i, x in enumerate(ex.input for ex in rows)
            ]
            out.append(list(await asyncio.gather(*(backend.generate(c) for c in calls))))
        return out
    finally:
        await backend.aclose()


def test_the_remeasured_card_is_the_llamacpp_backends_figures(
    remeasured: tuple[Path, Path, Any], tmp_path: Path
) -> None:
    trained, folder, options = remeasured
    before, card = read_card(trained), read_card(folder)
    assert before.measured_on == MeasuredOn("transformers")  # as training measured it
    model = find_gguf()
    assert card.measured_on == MeasuredOn("llamacpp", model.name, hashlib.sha256(model.read_bytes()).hexdigest())
    assert card.version != before.version and folder.parent == trained.parent  # a new version, served from now on
    for name in ("adapter_model.safetensors", GGUF_ADAPTER_FILE):  # the same weights
        assert (folder / name).read_bytes() == (trained / name).read_bytes()
    assert (card.task, card.labels, card.prompt, card.data) == (before.task, before.labels, before.prompt, before.data)

    dataset = load_dataset("trend", options)
    labels = card.labels
    results = {}
    splits = [dataset.split(VAL), dataset.split(TEST)]
    for split, rows, done in zip(
        (VAL, TEST), splits, asyncio.run(answers(card, folder, splits, tmp_path)), strict=True
    ):
        gold = np.array([labels.index(ex.label) for ex in rows])
        probs = np.array([[label_probabilities(c.tokens[0], labels)[x] for x in labels] for c in done])
        right = [choose_label(c.text, labels) == ex.label for c, ex in zip(done, rows, strict=True)]
        results[split] = (done, gold, probs, right)

    done, gold, probs, right = results[VAL]
    assert card.calibration_temperature == pytest.approx(fit_temperature(probs, gold), rel=1e-3)
    confidence = [score(c.text, c.tokens, labels, temperature=card.calibration_temperature).confidence for c in done]
    expected = choose_threshold(
        [c or 0.0 for c in confidence], right, card.target_accuracy, options.confidence_level, options.min_kept
    )
    assert card.guarantee is not None
    assert (card.guarantee.rows, card.guarantee.kept, card.guarantee.correct) == (
        expected.rows,
        expected.kept,
        expected.correct,
    )
    assert card.threshold == pytest.approx(expected.threshold, abs=2e-3)
    _, _, _, right = results[TEST]
    assert card.metrics["accuracy"] == round(sum(right) / len(right), 4)
    assert card.metrics["test_examples"] == len(right)
