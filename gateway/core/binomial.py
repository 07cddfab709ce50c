"""Exact binomial tails and Clopper-Pearson bounds, in plain Python (math only).

`tail(k, n, p)` is P(X >= k) for X ~ Binomial(n, p), computed as the regularized incomplete
beta function I_p(k, n - k + 1) by its continued fraction. `lower_bound` is the one-sided
Clopper-Pearson bound: the smallest accuracy p for which `k` or more successes in `n` is at
least 1 - level likely; the true accuracy is below it with probability at most 1 - level.
"""

from __future__ import annotations

import math

_EPS = 1e-15
_TINY = 1e-300
_MAX_TERMS = 100_000


def tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    _check_counts(k, n)
    if k <= 0:
        return 1.0
    return regularized_beta(p, k, n - k + 1)


def lower_bound(k: int, n: int, level: float) -> float:
    """One-sided Clopper-Pearson lower bound on a proportion from `k` successes in `n` trials.

    0 when there is no success (or no trial). Found by bisection on `tail`, which increases in
    p; the value returned errs low by less than one float step.
    """
    _check_counts(k, n)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be within (0, 1), got {level}")
    if k == 0:
        return 0.0
    alpha = 1.0 - level
    low, high = 0.0, 1.0  # tail(k, n, low) <= alpha < tail(k, n, high)
    while True:
        middle = (low + high) / 2
        if middle in (low, high):
            return low
        if tail(k, n, middle) <= alpha:
            low = middle
        else:
            high = middle


def upper_bound(k: int, n: int, level: float) -> float:
    """One-sided Clopper-Pearson upper bound: 1 - the lower bound of the failures' share."""
    return 1.0 - lower_bound(n - k, n, level)


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) for a, b > 0 (Lentz's continued fraction, with the symmetry that makes it converge)."""
    if a <= 0 or b <= 0:
        raise ValueError(f"a and b must be positive, got {a} and {b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _fraction(1.0 - x, b, a) / b


def _fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b), evaluated by the modified Lentz method."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    result = d
    for m in range(1, _MAX_TERMS):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            result *= c * d
        if abs(c * d - 1.0) < _EPS:
            return result
    raise ArithmeticError(f"incomplete beta: no convergence for x={x}, a={a}, b={b}")


def _check_counts(k: int, n: int) -> None:
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
