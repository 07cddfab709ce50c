"""[admission] as the gateway builds it: where each limit starts, and the door switched off."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.app.admission import build_admission
from gateway.config import AdmissionConfig
from gateway.core.contracts import Priority
from gateway.routing.admission import Klass


def test_the_local_tier_starts_at_the_backends_own_limit_unless_pinned() -> None:
    assert build_admission(AdmissionConfig(), 64).local().limit == 64
    assert build_admission(AdmissionConfig(), 100_000).local().limit == 1000  # local_max
    assert build_admission(AdmissionConfig(local_initial=8), 64).local().limit == 8


def test_key_classes_and_the_door_come_from_the_config() -> None:
    admission = build_admission(AdmissionConfig(key_classes={"batch-job": "bulk"}, door_initial=0), 64)
    assert admission.settings.key_classes == {"batch-job": Klass.BULK}
    assert admission.enter_door("batch-job", Priority.NORMAL) is None  # no door limit


def test_a_start_past_the_most_is_refused_naming_both() -> None:
    with pytest.raises(ValidationError, match=r"provider_initial \(5000\) must not exceed admission\.provider_max"):
        AdmissionConfig(provider_initial=5000, provider_max=4000)
