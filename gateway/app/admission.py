"""[admission] -> the router's Admission: each tier's limit, its queue and the classes' shares."""

from __future__ import annotations

from collections.abc import Callable

from gateway.config import AdmissionConfig
from gateway.routing.admission import Admission, AdmissionSettings, Klass, TierLimits
from gateway.routing.gradient import GradientSettings


def build_admission(
    config: AdmissionConfig, local_max_in_flight: int, loop_lag_s: Callable[[], float] = lambda: 0.0
) -> Admission:
    """`local_max_in_flight`: the local backend's own limit, where the local tier's starts unless
    [admission] local_initial says otherwise; `loop_lag_s`: how far behind the event loop runs."""
    local_initial = min(config.local_initial or local_max_in_flight, config.local_max)
    settings = AdmissionSettings(
        urgent_share=config.urgent_share,
        bulk_share=config.bulk_share,
        queue_factor=config.queue_factor,
        min_queue=config.min_queue,
        key_classes={name: Klass[klass.upper()] for name, klass in config.key_classes.items()},
    )
    limits = TierLimits(
        local=GradientSettings(
            initial=local_initial,
            min_limit=min(2, local_initial),
            max_limit=config.local_max,
            tolerance=config.tolerance,
        ),
        provider=GradientSettings(
            initial=config.provider_initial,
            min_limit=min(4, config.provider_initial),
            max_limit=config.provider_max,
            tolerance=config.tolerance,
        ),
        door=GradientSettings(
            initial=config.door_initial,
            min_limit=min(4, config.door_initial),
            max_limit=config.door_max,
            tolerance=config.tolerance,
        )
        if config.door_initial
        else None,
    )
    return Admission(settings, limits, loop_lag_s=loop_lag_s)
