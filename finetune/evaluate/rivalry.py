"""Champion and challenger: does the adapter trained now beat the one being served, on the same newest slice?

Both are scored on the challenger's test split (the newest traffic), each with its own
calibrated temperature. The figure compared is the coverage at the target accuracy: the
largest share of that slice an adapter could keep locally with its kept answers at least
`target` accurate (metrics.coverage_at_target over the slice, an in-sample figure). The challenger is published
only when it keeps more; a tie keeps the champion. With no champion, it is published.
"""

from __future__ import annotations

from dataclasses import dataclass

from finetune.evaluate import metrics
from finetune.evaluate.scoring import Scored


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


def standing(name: str, scored: Scored, temperature: float, target: float, min_kept: int) -> Standing:
    choice = metrics.coverage_at_target(scored.confidence(temperature), scored.correct, target, min_kept)
    return Standing(name, metrics.accuracy(scored.gold, scored.pred), choice.coverage, choice.accuracy)
