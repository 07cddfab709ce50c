"""LoRA adapter cards and the registry that serves them by task, with hot reload.

An adapter is a plain PEFT folder (adapter_config.json + adapter_model.safetensors) with a
`card.json` beside the weights that says what it is for: task, label set, prompt, the base
model it was trained on (and that base's content hash), metrics, calibrated temperature, and
escalation threshold with what it guarantees (gateway/core/guarantee.py). The registry reads
cards from a directory laid out as `<dir>/<name>/<version>/card.json`, maps each task to its
newest valid version, and swaps the whole mapping atomically when a new version appears;
requests that already hold a TaskSpec keep using the version they started with. A card from
before guarantees is served with its threshold as it is (a point estimate), with a warning.

A card also says which inference path its confidences were measured on (`measured_on`: the
transformers path, or llama.cpp on a named GGUF file; a card without it was measured on
transformers). Served by the other path it is served all the same, with a warning once: its
threshold and calibration were fitted on confidences that path does not compute exactly
(docs/local_backends.md gives how far the two agree; `python -m finetune remeasure` refits them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.core.binomial import lower_bound
from gateway.core.contracts import AdapterRef, TaskSpec
from gateway.core.guarantee import ESCALATE_ALL, METHOD, Guarantee, supports

log = logging.getLogger(__name__)

CARD_FILE = "card.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
SCHEMA_VERSION = 1
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HASH_FILE = ".content-sha256.json"


TRANSFORMERS = "transformers"
LLAMACPP = "llamacpp"
MEASURED_PATHS = (TRANSFORMERS, LLAMACPP)  # the inference paths a card's figures can be measured on
MEASURED_ON_LLAMACPP = "measured_on_llamacpp"  # TaskSpec metric: 1.0 when the card was measured on llama.cpp


class AdapterCardError(ValueError):
    """A card is missing, malformed, or does not fit the served base model; the message says what to do."""


class BaseModelMismatch(AdapterCardError):
    """The adapter was trained on a different base model than the one being served."""


@dataclass(frozen=True, slots=True)
class PromptSpec:
    system: str
    user: str = "{input}"  # `{input}` is the compact encoded input
    input_format: str = ""  # how to build `{input}` from raw data, in words


@dataclass(frozen=True, slots=True)
class MeasuredOn:
    """The inference path whose confidences fitted a card's temperature and threshold."""

    path: str = TRANSFORMERS  # one of MEASURED_PATHS
    model: str = ""  # llamacpp: the GGUF model file's name ("" for transformers: the card's base_model)
    model_sha256: str = ""  # llamacpp: that file's sha256

    def describe(self) -> str:
        return f"{self.path} ({self.model})" if self.model else self.path


@dataclass(frozen=True, slots=True)
class AdapterCard:
    name: str
    version: str
    task: str
    labels: tuple[str, ...]
    base_model: str  # what it was trained on: a folder or hub id
    base_model_sha256: str  # content hash of the base weights (see model_content_hash)
    prompt: PromptSpec
    threshold: float  # minimum calibrated confidence to keep an answer local (chosen on validation)
    calibration_temperature: float = 1.0
    target_accuracy: float = 0.95
    # what the threshold promises; None: a card from before guarantees, its threshold a point estimate
    guarantee: Guarantee | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)  # sources, split boundaries, counts
    training: Mapping[str, Any] = field(default_factory=dict)  # r, alpha, targets, lr, steps, time ...
    created_at: str = ""  # ISO 8601, UTC
    measured_on: MeasuredOn = MeasuredOn()  # which path its threshold and temperature were fitted on
    schema_version: int = SCHEMA_VERSION

    # -- serialisation --------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "labels": list(self.labels),
            "base_model": self.base_model,
            "base_model_sha256": self.base_model_sha256,
            "prompt": {
                "system": self.prompt.system,
                "user": self.prompt.user,
                "input_format": self.prompt.input_format,
            },
            "threshold": self.threshold if self.threshold <= 1.0 else None,  # null: every answer escalates
            "calibration_temperature": self.calibration_temperature,
            "target_accuracy": self.target_accuracy,
            **({} if self.guarantee is None else {"guarantee": _guarantee_json(self.guarantee)}),
            "metrics": dict(self.metrics),
            "data": dict(self.data),
            "training": dict(self.training),
            "created_at": self.created_at,
            "measured_on": {
                "path": self.measured_on.path,
                "model": self.measured_on.model,
                "model_sha256": self.measured_on.model_sha256,
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "card") -> AdapterCard:
        def need(key: str, kind: type | tuple[type, ...]) -> Any:
            if key not in data:
                raise AdapterCardError(f"{where}: missing '{key}'")
            value = data[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise AdapterCardError(f"{where}: '{key}' must be {_kind_name(kind)}, got {type(value).__name__}")
            return value

        prompt = need("prompt", dict)
        if not isinstance(prompt.get("system", ""), str) or not isinstance(prompt.get("user", "{input}"), str):
            raise AdapterCardError(f"{where}: 'prompt.system' and 'prompt.user' must be strings")
        metrics = data.get("metrics", {})
        if not isinstance(metrics, dict) or not all(_is_number(v) for v in metrics.values()):
            raise AdapterCardError(f"{where}: 'metrics' must map names to numbers")
        guarantee = data.get("guarantee")
        if guarantee is not None and not isinstance(guarantee, dict):
            raise AdapterCardError(f"{where}: 'guarantee' must be an object")
        if data.get("threshold", 0.0) is None and guarantee is None:
            raise AdapterCardError(f"{where}: 'threshold' is null (escalate everything) but there is no 'guarantee'")
        threshold = ESCALATE_ALL if data.get("threshold", 0.0) is None else float(need("threshold", (int, float)))
        measured = data.get(
            "measured_on", {}
        )  # absent: a card from before the llama.cpp path, measured on transformers
        if not isinstance(measured, dict) or not all(isinstance(v, str) for v in measured.values()):
            raise AdapterCardError(f"{where}: 'measured_on' must be an object of strings")
        target = float(data.get("target_accuracy", 0.95))
        card = cls(
            name=need("name", str),
            version=need("version", str),
            task=need("task", str),
            labels=tuple(need("labels", list)),
            base_model=need("base_model", str),
            base_model_sha256=need("base_model_sha256", str),
            prompt=PromptSpec(
                prompt.get("system", ""), prompt.get("user", "{input}"), str(prompt.get("input_format", ""))
            ),
            threshold=threshold,
            calibration_temperature=float(data.get("calibration_temperature", 1.0)),
            target_accuracy=target,
            guarantee=None if guarantee is None else _guarantee_from(guarantee, threshold, target, where),
            metrics={str(k): float(v) for k, v in metrics.items()},
            data=dict(data.get("data", {})),
            training=dict(data.get("training", {})),
            created_at=need("created_at", str),
            measured_on=MeasuredOn(
                measured.get("path", TRANSFORMERS), measured.get("model", ""), measured.get("model_sha256", "")
            ),
            schema_version=int(data.get("schema_version", SCHEMA_VERSION)),
        )
        card.validate(where)
        return card

    def validate(self, where: str = "card") -> None:
        """Raise AdapterCardError naming the first field that is wrong."""
        if self.schema_version != SCHEMA_VERSION:
            raise AdapterCardError(f"{where}: schema_version {self.schema_version} is not supported ({SCHEMA_VERSION})")
        for key, value in (("name", self.name), ("version", self.version), ("task", self.task)):
            if not _SAFE_NAME.match(value):
                raise AdapterCardError(f"{where}: '{key}' must be 1-64 letters, digits, '.', '_' or '-', got {value!r}")
        _check_labels(self.labels, where)
        if not re.fullmatch(r"[0-9a-f]{64}", self.base_model_sha256):
            raise AdapterCardError(f"{where}: 'base_model_sha256' must be 64 lower-case hex digits")
        if not (0.0 <= self.threshold <= 1.0 or (self.threshold == ESCALATE_ALL and self.guarantee is not None)):
            raise AdapterCardError(f"{where}: 'threshold' must be within [0, 1], got {self.threshold}")
        if self.guarantee is not None:
            _check_guarantee(self.guarantee, self.threshold, self.target_accuracy, where)
        if not (self.calibration_temperature > 0 and math.isfinite(self.calibration_temperature)):
            raise AdapterCardError(f"{where}: 'calibration_temperature' must be a positive number")
        _check_measured(self.measured_on, where)
        if "{input}" not in self.prompt.user:
            raise AdapterCardError(f"{where}: 'prompt.user' must contain '{{input}}'")
        try:
            datetime.fromisoformat(self.created_at)
        except ValueError:
            raise AdapterCardError(f"{where}: 'created_at' must be an ISO 8601 time, got {self.created_at!r}") from None

    def check_base(self, served_sha256: str, served_name: str = "the served base model") -> None:
        """Refuse an adapter trained on other weights than the ones being served."""
        if self.base_model_sha256 != served_sha256:
            raise BaseModelMismatch(
                f"adapter '{self.name}' version {self.version} was trained on {self.base_model} "
                f"(sha256 {self.base_model_sha256[:12]}...) but {served_name} has sha256 {served_sha256[:12]}...; "
                "a LoRA adapter only works on the exact base it was trained on: serve that base, or retrain the "
                "adapter on this one (python -m finetune --base <served model folder>)"
            )

    def task_spec(self, adapter_dir: Path) -> TaskSpec:
        return TaskSpec(
            name=self.task,
            labels=self.labels,
            threshold=self.threshold,
            adapter=AdapterRef(self.name, self.version, str(adapter_dir)),
            calibration_temperature=self.calibration_temperature,
            system_prompt=self.prompt.system,
            metrics=MappingProxyType(
                {
                    **self.metrics,
                    **(self.guarantee.figures() if self.guarantee else {}),
                    **({MEASURED_ON_LLAMACPP: 1.0} if self.measured_on.path == LLAMACPP else {}),
                }
            ),
        )


def _guarantee_json(g: Guarantee) -> dict[str, Any]:
    """The card's `guarantee`: the threshold and target are the card's own `threshold` and `target_accuracy`."""
    return {
        "method": METHOD,
        "confidence_level": g.level,
        "validation_rows": g.rows,
        "kept_rows": g.kept,
        "kept_correct": g.correct,
        "lower_bound": g.bound,
        "coverage": g.coverage,
    }


def _guarantee_from(data: Mapping[str, Any], threshold: float, target: float, where: str) -> Guarantee:
    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise AdapterCardError(f"{where}: 'guarantee.{key}' must be {_kind_name(kind)}")
        return value

    return Guarantee(
        threshold=threshold,
        target=target,
        level=float(need("confidence_level", (int, float))),
        rows=need("validation_rows", int),
        kept=need("kept_rows", int),
        correct=need("kept_correct", int),
        bound=float(need("lower_bound", (int, float))),
    )


def _check_guarantee(g: Guarantee, threshold: float, target: float, where: str) -> None:
    """The guarantee must be about this card's threshold and target, and hold: bound >= target, or nothing kept."""
    if (g.threshold, g.target) != (threshold, target):
        raise AdapterCardError(f"{where}: 'guarantee' is for threshold {g.threshold} and target {g.target}")
    if not 0.0 < g.level < 1.0:
        raise AdapterCardError(f"{where}: 'guarantee.confidence_level' must be within (0, 1), got {g.level}")
    if not 0 <= g.correct <= g.kept <= g.rows:
        raise AdapterCardError(f"{where}: 'guarantee' needs 0 <= kept_correct <= kept_rows <= validation_rows")
    bound = lower_bound(g.correct, g.kept, g.level)
    if abs(bound - g.bound) > 1e-6:
        raise AdapterCardError(
            f"{where}: 'guarantee.lower_bound' is {g.bound}, but {g.correct} right of {g.kept} kept gives {bound:.6f} "
            f"at {g.level:g}"
        )
    if g.supported and not supports(g.correct, g.kept, g.target, g.level):
        raise AdapterCardError(
            f"{where}: 'guarantee.lower_bound' {g.bound:.4f} is below the target {g.target}: the validation rows do "
            "not support this threshold (a card whose rows support none has 'threshold': null)"
        )
    if not g.supported and g.kept:
        raise AdapterCardError(f"{where}: 'threshold' is null (escalate everything) but 'guarantee.kept_rows' is not 0")


def measure_hint(task: str, served_by: str) -> str:
    """How to get a card measured on the path that serves it."""
    if served_by == LLAMACPP:
        return f"re-measure it there: python -m finetune remeasure --tasks {task}"
    return f"train it again, measured on {served_by}: python -m finetune --tasks {task}"


def _check_measured(measured: MeasuredOn, where: str) -> None:
    if measured.path not in MEASURED_PATHS:
        raise AdapterCardError(
            f"{where}: 'measured_on.path' must be one of {', '.join(MEASURED_PATHS)}, got {measured.path!r}"
        )


def _check_labels(labels: tuple[str, ...], where: str) -> None:
    if not labels or not all(isinstance(x, str) and x for x in labels):
        raise AdapterCardError(f"{where}: 'labels' must be a non-empty list of non-empty strings")
    if len(set(labels)) != len(labels):
        raise AdapterCardError(f"{where}: 'labels' has duplicates: {list(labels)}")


def _recency(card: AdapterCard) -> tuple[float, str]:
    created = datetime.fromisoformat(card.created_at)
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created.timestamp(), card.version


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(
        {"str": "a string", "list": "a list", "dict": "an object"}.get(k.__name__, "a number") for k in kinds
    )


def read_card(folder: Path) -> AdapterCard:
    """The card of an adapter folder, checked: valid JSON and fields, the PEFT files present."""
    path = folder / CARD_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AdapterCardError(f"{path}: no adapter card; every adapter folder needs a {CARD_FILE}") from None
    except json.JSONDecodeError as exc:
        raise AdapterCardError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AdapterCardError(f"{path}: must be a JSON object")
    card = AdapterCard.from_json(data, str(path))
    missing = [name for name in ADAPTER_FILES if not (folder / name).is_file()]
    if missing:
        raise AdapterCardError(f"{folder}: missing {', '.join(missing)} (a PEFT LoRA folder holds both)")
    return card


def write_card(card: AdapterCard, folder: Path) -> Path:
    card.validate(str(folder / CARD_FILE))
    path = folder / CARD_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card.to_json(), indent=2) + "\n")
    tmp.replace(path)
    return path


def model_content_hash(model_dir: Path) -> str:
    """sha256 over the base model's weight files (name + each file's sha256), in name order.

    Weights only: a re-saved tokenizer or config does not change what an adapter was trained on.
    Per-file digests are remembered in a small side file keyed by size and mtime when the folder
    is writable, so later calls take milliseconds instead of reading ~0.5 GB.
    """
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    if not files:
        raise AdapterCardError(f"{model_dir}: no *.safetensors or *.bin weights to hash")
    memo_path = model_dir / _HASH_FILE
    try:
        memo: dict[str, list[Any]] = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    total = hashlib.sha256()
    fresh: dict[str, list[Any]] = {}
    for file in files:
        stat = file.stat()
        known = memo.get(file.name)
        if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
            digest = str(known[2])
        else:
            digest = _file_sha256(file)
        fresh[file.name] = [stat.st_size, stat.st_mtime_ns, digest]
        total.update(f"{file.name}\0{digest}\n".encode())
    if fresh != memo:
        with contextlib.suppress(OSError):  # a read-only model folder: hash again next time
            memo_path.write_text(json.dumps(fresh))
    return total.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


# -- registry ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Loaded:
    stamp: tuple[int, int]  # card file (mtime_ns, size): unchanged files are not parsed again
    card: AdapterCard | None
    error: str = ""


@dataclass(frozen=True)
class _Snapshot:
    specs: Mapping[str, TaskSpec]  # task -> spec of its newest valid adapter
    cards: Mapping[str, AdapterCard]  # task -> that adapter's card
    loaded: Mapping[Path, _Loaded]  # every card file seen, valid or not


@dataclass(frozen=True, slots=True)
class RefreshReport:
    added: tuple[str, ...] = ()  # "name@version" now served
    removed: tuple[str, ...] = ()  # "name@version" no longer served
    errors: Mapping[str, str] = field(default_factory=dict)  # card path -> why it is not served


class AdapterRegistry:
    """A `TaskCatalog` over adapter cards in a directory; `refresh()` or `watch()` picks up new versions.

    `base_sha256` is the content hash of the served base model (model_content_hash(model_dir));
    cards trained on another base are refused with BaseModelMismatch's message. None skips the
    check (a remote backend whose weights are not on this box). `served_by` is the local backend
    (one of MEASURED_PATHS, else nothing is compared): a card measured on the other path is served
    with a warning, once per card file.
    """

    def __init__(
        self,
        directory: Path,
        *,
        base_sha256: str | None,
        base_name: str = "the served base model",
        served_by: str = "",
    ) -> None:
        self._directory = directory
        self._base_sha256 = base_sha256
        self._base_name = base_name
        self._served_by = served_by
        self._snapshot = _Snapshot({}, {}, {})
        self._lock = threading.Lock()  # one refresh at a time; readers never wait

    @property
    def directory(self) -> Path:
        return self._directory

    # -- TaskCatalog --------------------------------------------------------------------

    def get(self, name: str) -> TaskSpec | None:
        return self._snapshot.specs.get(name)

    def all(self) -> list[TaskSpec]:
        return list(self._snapshot.specs.values())

    # -- extras -------------------------------------------------------------------------

    def card(self, task: str) -> AdapterCard | None:
        return self._snapshot.cards.get(task)

    def errors(self) -> dict[str, str]:
        """Card files that are not served, and why."""
        return {str(path): item.error for path, item in self._snapshot.loaded.items() if item.error}

    def refresh(self) -> RefreshReport:
        """Scan the directory; serve each task's newest valid version. Swaps atomically."""
        with self._lock:
            old = self._snapshot
            loaded: dict[Path, _Loaded] = {}
            for path in self._card_paths():
                try:
                    stat = path.stat()
                except OSError:
                    continue  # removed while scanning
                stamp = (stat.st_mtime_ns, stat.st_size)
                previous = old.loaded.get(path)
                loaded[path] = previous if previous and previous.stamp == stamp else self._load(path, stamp)
            newest: dict[str, tuple[AdapterCard, Path]] = {}
            for path, item in loaded.items():
                card = item.card
                if card is None:
                    continue
                current = newest.get(card.task)
                if current is None or _recency(card) > _recency(current[0]):
                    newest[card.task] = (card, path.parent)
            specs = {task: card.task_spec(folder) for task, (card, folder) in newest.items()}
            cards = {task: card for task, (card, _) in newest.items()}
            self._snapshot = _Snapshot(MappingProxyType(specs), MappingProxyType(cards), MappingProxyType(loaded))
        before = {f"{c.name}@{c.version}" for c in old.cards.values()}
        after = {f"{c.name}@{c.version}" for c in cards.values()}
        for key in sorted(after - before):
            log.info("adapter served: %s", key)
        errors = {str(p): item.error for p, item in loaded.items() if item.error}
        return RefreshReport(tuple(sorted(after - before)), tuple(sorted(before - after)), errors)

    async def watch(self, interval_s: float = 2.0) -> None:
        """Refresh every interval_s seconds until cancelled (file reads happen off the event loop)."""
        while True:
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                log.exception("adapter directory scan failed: %s", self._directory)
            await asyncio.sleep(interval_s)

    # -- internals ------------------------------------------------------------------------

    def _card_paths(self) -> list[Path]:
        if not self._directory.is_dir():
            return []
        paths = list(self._directory.glob(f"*/{CARD_FILE}")) + list(self._directory.glob(f"*/*/{CARD_FILE}"))
        # folders whose name starts with "." are being written (see finetune.publish.export): never read them
        return sorted(
            p for p in paths if not any(part.startswith(".") for part in p.relative_to(self._directory).parts)
        )

    def _load(self, path: Path, stamp: tuple[int, int]) -> _Loaded:
        try:
            card = read_card(path.parent)
            if self._base_sha256 is not None:
                card.check_base(self._base_sha256, self._base_name)
        except AdapterCardError as exc:
            log.error("adapter not served: %s", exc)
            return _Loaded(stamp, None, str(exc))
        if card.guarantee is None:
            log.warning(
                "adapter %s@%s: its card predates threshold guarantees; threshold %.3f is a point estimate, served "
                "as it is (re-run python -m finetune --tasks %s for a threshold with a guarantee)",
                card.name,
                card.version,
                card.threshold,
                card.task,
            )
        if self._served_by in MEASURED_PATHS and card.measured_on.path != self._served_by:
            log.warning(
                "adapter %s@%s: its threshold and calibration were measured on %s but %s serves it; served as it is "
                "(how far the paths agree: docs/local_backends.md; %s)",
                card.name,
                card.version,
                card.measured_on.describe(),
                self._served_by,
                measure_hint(card.task, self._served_by),
            )
        return _Loaded(stamp, card)
