"""Champion and challenger: does the adapter trained now beat the one being served, on the same newest slice?

Both are scored on the challenger's test split (the newest traffic), each with its own
calibrated temperature. The figure compared is the coverage at the target accuracy: the
largest share of that slice an adapter could keep locally with its kept answers at least
`target` accurate (metrics.coverage_at_target over the slice, an in-sample figure). The challenger is published
only when it keeps more; a tie keeps the champion. With no champion, it is published.

Two kinds of local model for one task (a LoRA adapter, an embedding classifier) are compared by
`KindRivalry` from their cards' figures on the same rows (the same data file and split rule):
each at its own guaranteed threshold, the share of test it keeps, then of the held-out group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from finetune.evaluate import metrics
from finetune.evaluate.label_scores import LabelScores


@dataclass(frozen=True, slots=True)
class Standing:
    name: str  # "challenger" or the champion's version
    accuracy: float
    coverage: float  # share of the slice kept at the target accuracy
    kept_accuracy: float  # accuracy of what that keeps (nan when nothing qualifies)


@dataclass(frozen=True, slots=True)
class Rivalry:
    target: float
    examples: int
    challenger: Standing
    champion: Standing | None  # None: nothing is served for this task yet

    @property
    def challenger_wins(self) -> bool:
        return self.champion is None or self.challenger.coverage > self.champion.coverage

    def line(self, task: str) -> str:
        if self.champion is None:
            return f"{task}: no adapter is served yet; the challenger is published"
        verdict = "published" if self.challenger_wins else "NOT published (the champion keeps more; it stays served)"
        return (
            f"{task}: challenger keeps {self.challenger.coverage:.0%} of the newest {self.examples} requests at "
            f"{self.target:.0%} accuracy, champion {self.champion.name} keeps {self.champion.coverage:.0%}: {verdict}"
        )

    def markdown(self) -> str:
        rows = [self.challenger, *([self.champion] if self.champion is not None else [])]
        lines = [
            "## Champion and challenger",
            "",
            f"Both scored on the same newest slice: {self.examples} test requests; coverage = the largest share "
            f"kept locally with at least {self.target:.0%} accuracy.",
            "",
            "| adapter | accuracy | coverage at target | accuracy of the kept |",
            "|---|---|---|---|",
        ]
        lines += [f"| {s.name} | {s.accuracy:.3f} | {s.coverage:.0%} | {s.kept_accuracy:.3f} |" for s in rows]
        return "\n".join(lines) + "\n"


def standing(name: str, scored: LabelScores, temperature: float, target: float, min_kept: int) -> Standing:
    choice = metrics.coverage_at_target(scored.confidence(temperature), scored.correct, target, min_kept)
    return Standing(name, metrics.accuracy(scored.gold, scored.pred), choice.coverage, choice.accuracy)


# -- two kinds of local model for one task --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KindStanding:
    """One kind of model's published figures on the task's test split and one held-out group, read
    from its card: each at its own guaranteed threshold (chosen on its own validation rows)."""

    kind: str  # "lora" or "embedding-classifier"
    version: str
    accuracy: float
    auroc: float
    kept: float  # share of test kept at the guaranteed threshold
    kept_accuracy: float  # nan when nothing is kept
    heldout_auroc: float  # on the held-out group named by the rivalry (nan when the card has none)
    heldout_kept: float

    def key(self) -> tuple[float, float, float]:
        return (self.kept, _zero(self.heldout_kept), _zero(self.auroc))


@dataclass(frozen=True, slots=True)
class KindRivalry:
    """The served kind (champion) against another kind (challenger), on the same rows. The challenger
    wins when it keeps more of test at its guaranteed threshold; when both keep the same share (both
    nothing, say), more of the held-out group; then the higher test AUROC. A tie keeps the champion."""

    task: str
    heldout_group: str
    challenger: KindStanding
    champion: KindStanding | None  # None: no comparable model of the other kind (none, or other data)
    note: str = ""  # why there is no champion

    @property
    def challenger_wins(self) -> bool:
        return self.champion is None or self.challenger.key() > self.champion.key()

    @property
    def winner(self) -> str:
        return self.challenger.kind if self.challenger_wins or self.champion is None else self.champion.kind

    def why(self) -> str:
        c, h = self.challenger, self.champion
        if h is None:
            return f"no {self.task} model of another kind to compare with ({self.note or 'none found'})"
        names = (
            "share of test kept at the guaranteed threshold",
            f"share of heldout:{self.heldout_group} kept",
            "test AUROC",
        )
        for name, mine, theirs in zip(names, c.key(), h.key(), strict=True):
            if mine != theirs:
                better, worse = (c, h) if mine > theirs else (h, c)
                a, b = (mine, theirs) if mine > theirs else (theirs, mine)
                return (
                    f"{better.kind} {better.version} wins on {name}: {a:.3f} against "
                    f"{worse.kind} {worse.version}'s {b:.3f}"
                )
        return f"a tie on every figure keeps the champion ({h.kind} {h.version})"

    def to_json(self) -> dict[str, Any]:
        return {
            "winner": self.winner,
            "why": self.why(),
            "heldout_group": self.heldout_group,
            "challenger": asdict(self.challenger),
            "champion": None if self.champion is None else asdict(self.champion),
        }

    def markdown(self) -> str:
        rows = [self.challenger, *([self.champion] if self.champion is not None else [])]
        lines = [
            "## Champion and challenger: kinds of local model",
            "",
            f"Each at its own guaranteed threshold; test split and heldout:{self.heldout_group}. "
            f"Winner: **{self.winner}**{' (unopposed)' if self.champion is None else ''}: {self.why()}.",
            "",
            f"| kind | version | test accuracy | test AUROC | test kept (accuracy) | "
            f"heldout:{self.heldout_group} AUROC | heldout:{self.heldout_group} kept |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {s.kind} | {s.version} | {s.accuracy:.3f} | {s.auroc:.3f} | {s.kept:.0%} ({s.kept_accuracy:.3f}) | "
            f"{s.heldout_auroc:.3f} | {s.heldout_kept:.0%} |"
            for s in rows
        ]
        return "\n".join(lines) + "\n"


def kind_standing(kind: str, version: str, card_metrics: Mapping[str, float], heldout_group: str) -> KindStanding:
    """A kind's standing from its card's metrics (finetune.evaluate.evaluation.Evaluation.card_metrics)."""
    group = f"heldout_{heldout_group}"

    def get(key: str) -> float:
        return float(card_metrics.get(key, math.nan))

    return KindStanding(
        kind,
        version,
        get("accuracy"),
        get("auroc"),
        _zero(get("kept_share")),
        get("kept_accuracy"),
        get(f"{group}_auroc"),
        _zero(get(f"{group}_kept_share")),
    )


def _zero(value: float) -> float:
    return 0.0 if math.isnan(value) else value
