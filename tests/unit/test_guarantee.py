"""Exact binomial bounds and thresholds with a finite-sample guarantee (gateway/core/binomial.py, guarantee.py)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from gateway.core import binomial
from gateway.core.guarantee import ESCALATE_ALL, Guarantee, choose_threshold, fewest_rows, from_figures, supports


def exact_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), as the plain sum of its terms."""
    return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def exact_lower_bound(k: int, n: int, level: float) -> float:
    """The Clopper-Pearson lower bound by bisection on the plain sum (independent of the incomplete beta)."""
    low, high = 0.0, 1.0
    for _ in range(100):
        middle = (low + high) / 2
        if exact_tail(k, n, middle) <= 1 - level:
            low = middle
        else:
            high = middle
    return low


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [(1, 1, 0.3), (0, 5, 0.5), (3, 10, 0.2), (9, 10, 0.95), (57, 60, 0.9), (95, 100, 0.95), (40, 80, 0.5)],
)
def test_tail_is_the_binomial_sum(k: int, n: int, p: float) -> None:
    assert binomial.tail(k, n, p) == pytest.approx(exact_tail(k, n, p), rel=1e-10, abs=1e-300)


@pytest.mark.parametrize(("k", "n"), [(1, 3), (9, 10), (19, 20), (57, 60), (95, 100), (120, 150)])
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_lower_bound_matches_a_search_on_the_binomial_sum(k: int, n: int, level: float) -> None:
    assert binomial.lower_bound(k, n, level) == pytest.approx(exact_lower_bound(k, n, level), abs=1e-9)


@pytest.mark.parametrize(
    ("k", "n", "level", "reference"),  # scipy.stats.beta.ppf(1 - level, k, n - k + 1)
    [
        (95, 100, 0.95, 0.8977466223567255),
        (9, 10, 0.95, 0.6058366975634953),
        (290, 300, 0.95, 0.9441152594854414),
        (1950, 2000, 0.9, 0.9699085904465825),
        (50, 100, 0.99, 0.3807174669069525),
    ],
)
def test_lower_bound_matches_tabulated_values(k: int, n: int, level: float, reference: float) -> None:
    assert binomial.lower_bound(k, n, level) == pytest.approx(reference, abs=1e-10)


@pytest.mark.parametrize("n", [1, 2, 7, 59, 300, 5000])
@pytest.mark.parametrize("level", [0.8, 0.95, 0.999])
def test_bounds_at_the_edges_are_exact(n: int, level: float) -> None:
    assert binomial.lower_bound(n, n, level) == pytest.approx((1 - level) ** (1 / n), abs=1e-12)  # P(all) = p**n
    assert binomial.lower_bound(0, n, level) == 0.0
    assert binomial.upper_bound(n, n, level) == 1.0
    assert binomial.upper_bound(0, n, level) == pytest.approx(1 - (1 - level) ** (1 / n), abs=1e-12)


def test_bounds_are_monotone_and_mirror_each_other() -> None:
    n = 80
    lows = [binomial.lower_bound(k, n, 0.95) for k in range(n + 1)]
    assert all(a < b for a, b in itertools.pairwise(lows))
    for k in range(n + 1):
        assert binomial.upper_bound(k, n, 0.95) == pytest.approx(1 - lows[n - k], abs=1e-15)
        assert lows[k] <= k / n <= binomial.upper_bound(k, n, 0.95)
    assert binomial.lower_bound(70, n, 0.99) < binomial.lower_bound(70, n, 0.95) < binomial.lower_bound(70, n, 0.8)
    assert binomial.lower_bound(140, 160, 0.95) > binomial.lower_bound(70, 80, 0.95)  # more rows, tighter


def test_bad_counts_and_levels_are_refused() -> None:
    for k, n in ((3, 2), (-1, 2), (0, -1)):
        with pytest.raises(ValueError, match="0 <= k <= n"):
            binomial.tail(k, n, 0.5)
    for level in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="level"):
            binomial.lower_bound(1, 2, level)


def test_supports_is_the_bound_reaching_the_target() -> None:
    for n in (59, 100, 300):
        for k in range(n - 12, n + 1):
            assert supports(k, n, 0.95, 0.95) == (binomial.lower_bound(k, n, 0.95) >= 0.95), (k, n)
    assert not supports(0, 0, 0.95, 0.95)


def test_fewest_rows_is_where_a_perfect_record_first_passes() -> None:
    n = fewest_rows(0.95, 0.95)
    assert n == 59 and supports(n, n, 0.95, 0.95) and not supports(n - 1, n - 1, 0.95, 0.95)
    assert fewest_rows(0.9, 0.9) == 22


def test_threshold_keeps_the_confident_rows_and_stops_where_the_bound_fails() -> None:
    # 100 right at 0.99, then 100 at 0.5 of which half are right: only the first 100 are supported
    confidence = [0.99] * 100 + [0.5] * 100
    correct = [True] * 100 + [True, False] * 50
    g = choose_threshold(confidence, correct, target=0.95, level=0.95)
    assert (g.threshold, g.rows, g.kept, g.correct) == (0.99, 200, 100, 100)
    assert g.supported and g.coverage == 0.5 and g.accuracy == 1.0
    assert g.bound == pytest.approx(0.05 ** (1 / 100))


def test_the_scan_stops_at_the_first_failure_even_if_a_lower_threshold_would_pass() -> None:
    # 100 right (0.99), then 20 wrong (0.9), then 900 right (0.8): all 1020 together would pass,
    # but fixed-sequence testing stops at 0.9, where 100 of 120 do not
    confidence = [0.99] * 100 + [0.9] * 20 + [0.8] * 900
    correct = [True] * 100 + [False] * 20 + [True] * 900
    assert supports(1000, 1020, 0.95, 0.95)
    assert choose_threshold(confidence, correct, target=0.95).threshold == 0.99


def test_rows_that_support_no_threshold_escalate_everything() -> None:
    rng = random.Random(1)
    correct = [rng.random() < 0.9 for _ in range(500)]
    confidence = [rng.random() for _ in range(500)]  # no better than chance at ordering the rows
    g = choose_threshold(confidence, correct, target=0.95)
    assert g == Guarantee(ESCALATE_ALL, 0.95, 0.95, 500, 0, 0, 0.0)
    assert not g.supported and g.coverage == 0.0 and math.isnan(g.accuracy)
    assert all(c < g.threshold for c in (0.0, 0.5, 1.0))  # no confidence reaches it
    assert "escalates everything" in g.describe()
    # too few rows: 58 perfect answers cannot show 0.95 at 95 % confidence
    assert not choose_threshold([0.99] * 58, [True] * 58, target=0.95).supported
    assert choose_threshold([0.99] * 59, [True] * 59, target=0.95).threshold == 0.99
    # min_kept moves the start down the scan
    assert not choose_threshold([0.99] * 59, [True] * 59, target=0.95, min_kept=60).supported


def test_figures_round_trip() -> None:
    g = choose_threshold([0.99] * 100 + [0.5] * 100, [True] * 100 + [False] * 100, target=0.95)
    assert from_figures(g.figures()) == g
    assert from_figures({"accuracy": 0.9}) is None
    assert "threshold 0.990: kept accuracy >= 0.95 at 95% confidence" in g.describe()


def accuracy_above(threshold: float) -> float:
    """Population accuracy of the answers kept at `threshold` when confidence = 1 - u**3 / 2 (u uniform)
    and an answer is right with probability equal to its confidence."""
    q = min(1.0, math.pow(2 * (1 - threshold), 1 / 3))  # kept: u <= q
    return 1 - q**3 / 8


def point_estimate(confidence: list[float], correct: list[bool], target: float, min_kept: int = 20) -> float:
    """The rule cards used before guarantees: the lowest threshold whose kept rows reach the target."""
    rows = sorted(zip(confidence, correct, strict=True), reverse=True)
    best, right = 1.0, 0
    for i, (c, ok) in enumerate(rows):
        right += ok
        if i + 1 >= min_kept and right / (i + 1) >= target:
            best = c
    return best


def test_kept_accuracy_misses_the_target_at_most_about_the_stated_share_of_draws() -> None:
    """Repeated validation draws of a well-ordered model: the point estimate keeps answers below
    the target in about half of them, the guaranteed threshold in at most ~5 % (level 0.95)."""
    rng = random.Random(20261207)
    draws, rows, target = 200, 400, 0.95
    point_misses = guaranteed_misses = 0
    kept = 0.0
    for _ in range(draws):
        confidence = [1 - rng.random() ** 3 / 2 for _ in range(rows)]
        correct = [rng.random() < c for c in confidence]
        point_misses += accuracy_above(point_estimate(confidence, correct, target)) < target
        g = choose_threshold(confidence, correct, target, level=0.95)
        if g.supported:
            guaranteed_misses += accuracy_above(g.threshold) < target
            kept += g.coverage / draws
    assert point_misses / draws > 0.3
    assert guaranteed_misses / draws <= 0.08  # 0.05 plus sampling error over 200 draws
    assert kept > 0.35  # and it still keeps a useful share (the population optimum is ~0.74)
