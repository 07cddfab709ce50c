"""Adapter cards and the registry: validation, base-model hash check, hot swap without failed requests."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.core import binomial
from gateway.core.contracts import TaskCatalog
from gateway.core.guarantee import METHOD, choose_threshold, from_figures
from gateway.routing.policy import should_escalate
from local_models.adapters import (
    AdapterCard,
    AdapterCardError,
    AdapterRegistry,
    BaseModelMismatch,
    PromptSpec,
    model_content_hash,
    read_card,
    write_card,
)
from tests.waiting import wait_until_async

BASE = "a" * 64
OTHER = "b" * 64


def card(version: str = "20261126-010000", *, task: str = "trend", threshold: float = 0.8, **kw: Any) -> AdapterCard:
    values: dict[str, Any] = {
        "name": task,
        "version": version,
        "task": task,
        "labels": ("up", "down", "flat"),
        "base_model": "smollm2-135m-instruct",
        "base_model_sha256": BASE,
        "prompt": PromptSpec("Trend: up, down or flat?", "{input}", "20 digits"),
        "threshold": threshold,
        "calibration_temperature": 1.5,
        "metrics": {"accuracy": 0.9, "auroc": 0.88},
        "created_at": f"{version[:4]}-{version[4:6]}-{version[6:8]}T{version[9:11]}:{version[11:13]}:00+00:00",
    }
    values.update(kw)
    return AdapterCard(**values)


def publish(root: Path, c: AdapterCard) -> Path:
    """An adapter folder as the pipeline writes it (weights are placeholders: the registry never loads them)."""
    staging = root / c.name / f".{c.version}.partial"
    staging.mkdir(parents=True)
    (staging / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (staging / "adapter_model.safetensors").write_bytes(b"\0")
    write_card(c, staging)
    final = root / c.name / c.version
    staging.rename(final)
    return final


def test_card_round_trips_through_json(tmp_path: Path) -> None:
    folder = publish(tmp_path, card())
    loaded = read_card(folder)
    assert loaded == card()
    spec = loaded.task_spec(folder)
    assert spec.labels == ("up", "down", "flat") and spec.threshold == 0.8
    assert spec.calibration_temperature == 1.5 and spec.system_prompt == "Trend: up, down or flat?"
    assert spec.adapter is not None and spec.adapter.path == str(folder) and spec.adapter.version == card().version
    assert dict(spec.metrics) == {"accuracy": 0.9, "auroc": 0.88}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"labels": []}, "labels"),
        ({"labels": ["up", "up"]}, "duplicates"),
        ({"base_model_sha256": "xyz"}, "base_model_sha256"),
        ({"version": "../etc"}, "version"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"calibration_temperature": 0}, "calibration_temperature"),
        ({"prompt": {"system": "s", "user": "no placeholder"}}, "prompt.user"),
        ({"metrics": {"accuracy": "high"}}, "metrics"),
        ({"schema_version": 99}, "schema_version"),
    ],
)
def test_invalid_cards_are_refused_naming_the_field(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    data = card().to_json() | change
    with pytest.raises(AdapterCardError, match=message):
        AdapterCard.from_json(data)


def test_missing_field_and_missing_weights_are_named(tmp_path: Path) -> None:
    data = card().to_json()
    del data["threshold"]
    with pytest.raises(AdapterCardError, match="missing 'threshold'"):
        AdapterCard.from_json(data)
    folder = publish(tmp_path, card())
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterCardError, match=r"adapter_model\.safetensors"):
        read_card(folder)


def guaranteed(**kw: Any) -> AdapterCard:
    """A card whose threshold came with a guarantee: 100 of 100 validation rows right at 0.99 or above."""
    g = choose_threshold([0.99] * 100 + [0.5] * 100, [True] * 100 + [False] * 100, target=0.95)
    return card(threshold=g.threshold, target_accuracy=g.target, guarantee=g, **kw)


def test_a_guarantee_round_trips_and_reaches_list_models_through_the_spec(tmp_path: Path) -> None:
    c = guaranteed()
    data = c.to_json()
    assert data["threshold"] == 0.99 and data["target_accuracy"] == 0.95
    assert data["guarantee"] == {
        "method": METHOD,
        "confidence_level": 0.95,
        "validation_rows": 200,
        "kept_rows": 100,
        "kept_correct": 100,
        "lower_bound": pytest.approx(0.05 ** (1 / 100)),
        "coverage": 0.5,
    }
    folder = publish(tmp_path, c)
    assert read_card(folder) == c
    spec = c.task_spec(folder)
    assert spec.threshold == 0.99 and from_figures(spec.metrics) == c.guarantee
    assert spec.metrics["accuracy"] == 0.9  # the card's own metrics stay


def test_a_card_whose_rows_support_no_threshold_escalates_everything(tmp_path: Path) -> None:
    g = choose_threshold([0.99] * 30, [True] * 30, target=0.95)  # 30 rows cannot show 0.95
    c = card(threshold=g.threshold, guarantee=g)
    data = c.to_json()
    assert data["threshold"] is None and data["guarantee"]["kept_rows"] == 0
    loaded = read_card(publish(tmp_path, c))
    assert loaded == c and loaded.guarantee is not None and not loaded.guarantee.supported
    spec = loaded.task_spec(tmp_path)
    assert spec.threshold is not None and all(should_escalate(x, spec.threshold) for x in (0.0, 0.99, 1.0))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kept_correct": 90}, "lower_bound' is 0.97.* 90 right of 100 kept gives 0.8"),  # not these rows' bound
        ({"kept_correct": 90, "lower_bound": binomial.lower_bound(90, 100, 0.95)}, "do not support this threshold"),
        ({"kept_rows": 300}, "kept_rows <= validation_rows"),
        ({"confidence_level": 1.0}, "confidence_level"),
        ({"validation_rows": "200"}, "validation_rows"),
    ],
)
def test_a_guarantee_the_rows_do_not_back_is_refused(change: dict[str, Any], message: str) -> None:
    data = guaranteed().to_json()
    data["guarantee"] |= change
    with pytest.raises(AdapterCardError, match=message):
        AdapterCard.from_json(data)


def test_a_null_threshold_needs_a_guarantee_that_keeps_nothing() -> None:
    data = guaranteed().to_json() | {"threshold": None}
    with pytest.raises(AdapterCardError, match=r"null .*'guarantee\.kept_rows' is not 0"):
        AdapterCard.from_json(data)
    del data["guarantee"]
    with pytest.raises(AdapterCardError, match=r"null .*no 'guarantee'"):
        AdapterCard.from_json(data)
    with pytest.raises(AdapterCardError, match=r"'guarantee' is for threshold 0\.99"):
        card(threshold=0.5, guarantee=guaranteed().guarantee).validate()


def test_a_card_from_before_guarantees_is_served_as_a_point_estimate_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    publish(tmp_path, card(threshold=0.8))  # no guarantee: written before cards carried one
    assert "guarantee" not in card().to_json()
    registry = AdapterRegistry(tmp_path, base_sha256=BASE)
    registry.refresh()
    spec = registry.get("trend")
    assert spec is not None and spec.threshold == 0.8 and from_figures(spec.metrics) is None
    assert "predates threshold guarantees" in caplog.text and "python -m finetune --tasks trend" in caplog.text


def test_an_adapter_for_another_base_is_refused_with_a_clear_error() -> None:
    with pytest.raises(BaseModelMismatch, match=r"trained on smollm2-135m-instruct .*retrain the adapter"):
        card().check_base(OTHER, "the served model")
    card().check_base(BASE)  # the same base passes


def test_content_hash_covers_the_weights_and_remembers_per_file_digests(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"weights-1")
    (tmp_path / "config.json").write_text("{}")
    first = model_content_hash(tmp_path)
    assert first == model_content_hash(tmp_path)
    assert (tmp_path / ".content-sha256.json").is_file()
    (tmp_path / "config.json").write_text('{"re-saved": true}')
    assert model_content_hash(tmp_path) == first  # config and tokenizer files do not count
    (tmp_path / "model.safetensors").write_bytes(b"weights-2")
    os.utime(tmp_path / "model.safetensors", ns=(1, 1))  # a new mtime: the remembered digest is stale
    assert model_content_hash(tmp_path) != first
    with pytest.raises(AdapterCardError, match="no"):
        model_content_hash(tmp_path / "missing")


def test_registry_serves_the_newest_valid_version_of_each_task(tmp_path: Path) -> None:
    publish(tmp_path, card("20261126-010000", threshold=0.7))
    publish(tmp_path, card("20261126-020000", threshold=0.9))
    publish(tmp_path, card("20261126-030000", base_model_sha256=OTHER))  # newest, but for another base
    publish(tmp_path, card("20261126-010000", task="volatility", labels=("low", "normal", "high")))
    (tmp_path / "trend" / ".20261126-040000.partial").mkdir()  # being written: ignored
    registry = AdapterRegistry(tmp_path, base_sha256=BASE)
    catalog: TaskCatalog = registry  # mypy checks that the registry is a TaskCatalog
    report = registry.refresh()
    assert report.added == ("trend@20261126-020000", "volatility@20261126-010000")
    assert list(report.errors) == [str(tmp_path / "trend" / "20261126-030000" / "card.json")]
    assert "retrain" in next(iter(registry.errors().values()))
    spec = registry.get("trend")
    assert spec is not None and spec.threshold == 0.9 and spec.adapter is not None
    assert spec.adapter.version == "20261126-020000"
    assert {s.name for s in catalog.all()} == {"trend", "volatility"}
    assert catalog.get("unknown") is None
    assert spec.metrics["auroc"] == 0.88  # what ListModels shows beside the threshold


def test_a_new_version_swaps_in_while_holders_of_the_old_keep_it(tmp_path: Path) -> None:
    publish(tmp_path, card("20261126-010000", threshold=0.7))
    registry = AdapterRegistry(tmp_path, base_sha256=BASE)
    registry.refresh()
    in_flight = registry.get("trend")  # a request that started before the new version arrived
    publish(tmp_path, card("20261126-020000", threshold=0.9))
    assert registry.get("trend") == in_flight  # nothing changes until a refresh
    report = registry.refresh()
    assert report.added == ("trend@20261126-020000",) and report.removed == ("trend@20261126-010000",)
    new = registry.get("trend")
    assert new is not None and new.adapter is not None and new.adapter.version == "20261126-020000"
    assert in_flight is not None and in_flight.adapter is not None
    assert in_flight.adapter.version == "20261126-010000" and in_flight.threshold == 0.7
    assert Path(in_flight.adapter.path).is_dir()  # the old folder stays for requests still using it
    shutil.rmtree(tmp_path / "trend" / "20261126-020000")  # withdrawing a version falls back to the previous one
    registry.refresh()
    back = registry.get("trend")
    assert back is not None and back.adapter is not None and back.adapter.version == "20261126-010000"


async def test_watch_swaps_under_load_without_a_failed_or_mixed_lookup(tmp_path: Path) -> None:
    publish(tmp_path, card("20261126-000000", threshold=0.5))
    registry = AdapterRegistry(tmp_path, base_sha256=BASE)
    registry.refresh()
    watcher = asyncio.create_task(registry.watch(interval_s=0.01))
    seen: set[str] = set()
    failures: list[str] = []
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            spec = registry.get("trend")
            if spec is None or spec.adapter is None:
                failures.append("no adapter")
            else:  # threshold and version must come from the same card
                expected = 0.5 + int(spec.adapter.version[-4:-2]) / 100
                if spec.threshold != pytest.approx(expected):
                    failures.append(f"{spec.adapter.version} with threshold {spec.threshold}")
                seen.add(spec.adapter.version)
            await asyncio.sleep(0.001)  # a lookup per client per millisecond; sleep(0) would starve the scan thread

    def serves(version: str) -> bool:
        spec = registry.get("trend")
        return spec is not None and spec.adapter is not None and spec.adapter.version == version

    clients = [asyncio.create_task(client()) for _ in range(20)]
    try:
        for minute in range(1, 6):
            version = f"20261126-00{minute:02d}00"
            publish(tmp_path, card(version, threshold=0.5 + minute / 100))
            # the watcher picks it up at its next scan (every 10 ms); the deadline only guards against a hang
            await wait_until_async(
                functools.partial(serves, version), timeout_s=30, what=f"the watcher to pick up version {version}"
            )
    finally:
        stop.set()
        await asyncio.gather(*clients)
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
    assert failures == []
    assert "20261126-000500" in seen and len(seen) >= 2


def test_registry_without_a_directory_is_empty(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "none", base_sha256=None)
    assert registry.refresh().added == () and registry.all() == []
