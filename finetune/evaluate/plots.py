"""PNG plots for the run report: reliability diagrams and risk-coverage curves (matplotlib, Agg)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from finetune.evaluate.metrics import Reliability, RiskCoverage


def reliability_png(curves: Mapping[str, Reliability], path: Path, title: str) -> Path:
    """One panel per curve: accuracy vs mean confidence per bin, against the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 4), squeeze=False)
    for ax, (name, curve) in zip(axes[0], curves.items(), strict=True):
        centres = [(a + b) / 2 for a, b in zip(curve.edges, curve.edges[1:], strict=False)]
        width = curve.edges[1] - curve.edges[0]
        ax.bar(
            centres, [0 if math.isnan(a) else a for a in curve.accuracy], width=width * 0.9, alpha=0.7, label="accuracy"
        )
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        for x, n in zip(centres, curve.counts, strict=True):
            if n:
                ax.text(x, 0.02, str(n), ha="center", fontsize=7)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=f"{name}: ECE {curve.ece:.3f}")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def risk_coverage_png(
    curves: Mapping[str, RiskCoverage], path: Path, title: str, target_accuracy: float, chosen: tuple[float, float]
) -> Path:
    """Error rate of the answers kept locally vs the share kept; the chosen threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, curve in curves.items():
        ax.step([0.0, *curve.coverage], [curve.risk[0] if curve.risk else 0, *curve.risk], where="post", label=name)
    ax.axhline(
        1 - target_accuracy, color="grey", linestyle="--", linewidth=1, label=f"target risk {1 - target_accuracy:.2f}"
    )
    if chosen[0] > 0:  # nothing kept: there is no point to mark
        ax.plot([chosen[0]], [chosen[1]], "ro", label="threshold from validation")
    ax.set(xlim=(0, 1), ylim=(0, None), xlabel="share kept locally (coverage)", ylabel="error rate of kept (risk)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
