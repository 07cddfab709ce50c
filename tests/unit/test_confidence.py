from __future__ import annotations

import math

import pytest

from gateway.core.confidence import choose_label, label_probabilities, quantile_confidence, score
from gateway.core.contracts import TokenLogprob


def tok(token: str, p: float, top: dict[str, float] | None = None) -> TokenLogprob:
    return TokenLogprob(token, math.log(p), {k: math.log(v) for k, v in (top or {}).items()})


def test_label_probability_is_renormalised_over_the_label_set() -> None:
    first = tok("up", 0.06, {"The": 0.5, " up": 0.02, "down": 0.04, "side": 0.02})
    probs = label_probabilities(first, ["up", "down", "sideways"])
    assert probs["up"] == pytest.approx(0.08 / 0.14)
    assert probs["down"] == pytest.approx(0.04 / 0.14)
    assert probs["sideways"] == pytest.approx(0.02 / 0.14)


def test_ambiguous_prefix_tokens_count_for_no_label() -> None:
    first = tok("s", 0.5, {"sell": 0.1, "short": 0.3})
    probs = label_probabilities(first, ["sell", "short"])
    assert probs == pytest.approx({"sell": 0.25, "short": 0.75})


def test_temperature_scaling_softens_and_sharpens() -> None:
    first = tok("up", 0.8, {"down": 0.2})
    assert label_probabilities(first, ["up", "down"], temperature=2.0)["up"] == pytest.approx(
        math.sqrt(0.8) / (math.sqrt(0.8) + math.sqrt(0.2))
    )
    assert label_probabilities(first, ["up", "down"], temperature=0.5)["up"] == pytest.approx(0.64 / 0.68)


def test_score_for_labels_uses_the_chosen_label() -> None:
    tokens = [tok("Down", 0.3, {"Up": 0.6}), tok(".", 0.9)]
    result = score("Down.", tokens, ["up", "down"])
    assert result.label == "down"
    assert result.confidence == pytest.approx(0.3 / 0.9)


def test_an_answer_outside_the_label_set_has_zero_confidence() -> None:
    assert score("Maybe", [tok("Maybe", 0.9)], ["up", "down"]).confidence == 0.0


def test_free_text_uses_a_low_quantile_not_the_product() -> None:
    tokens = [tok(str(i), p) for i, p in enumerate([0.9, 0.95, 0.99, 0.2, 0.97, 0.9, 0.92, 0.96, 0.98, 0.99, 0.91])]
    assert quantile_confidence(tokens, 0.0) == pytest.approx(0.2)
    assert quantile_confidence(tokens, 0.1) == pytest.approx(0.9)
    assert quantile_confidence(tokens, 0.5) == pytest.approx(0.95)
    product = math.prod(math.exp(t.logprob) for t in tokens)
    assert score("x", tokens).confidence > product


def test_no_logprobs_means_no_confidence() -> None:
    assert score("anything", []).confidence is None
    assert score("up", [], ["up", "down"]).confidence is None
    assert choose_label("  UP trend", ["up", "down"]) == "up"
