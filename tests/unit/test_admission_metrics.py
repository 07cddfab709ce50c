"""/metrics shows each admission gate's limit, calls in flight and calls queued, as the gates have them now."""

from __future__ import annotations

from prometheus_client import generate_latest

from gateway.observe.metrics import Metrics
from gateway.routing.admission import Admission, Klass, Permit


def test_each_gate_is_scraped_as_it_is_now() -> None:
    admission = Admission()
    permit = admission.provider("openai").try_enter(Klass.NORMAL)
    assert isinstance(permit, Permit)
    metrics = Metrics(gates=admission.figures)
    text = generate_latest(metrics.registry).decode()
    assert 'gateway_admission_limit{gate="provider openai"} 200.0' in text
    assert 'gateway_admission_in_flight{gate="provider openai"} 1.0' in text
    assert 'gateway_admission_queued{gate="provider openai"} 0.0' in text
    permit.release(answered=False)
    assert 'gateway_admission_in_flight{gate="provider openai"} 0.0' in generate_latest(metrics.registry).decode()
