"""UsageReport -> GetUsageResponse, a pure function (the dashboard's JSON comes from the same report)."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.observe.usage_report import UsageReport, iso_utc
from gateway.observe.usage_series import DaySeries
from gateway.v1 import gateway_pb2 as pb


def usage_to_proto(report: UsageReport) -> pb.GetUsageResponse:
    s = report.summary
    percentiles = s.latency.percentiles_ms
    return pb.GetUsageResponse(
        providers=[
            pb.ProviderUsage(
                provider=p.provider, tokens_used=p.tokens_used, token_budget=p.token_budget, requests=p.requests
            )
            for p in report.providers
        ],
        requests_by_tier=dict(s.requests_by_tier),
        escalations_by_reason=dict(s.escalations_by_reason),
        day=report.day,
        requests=s.requests,
        tokens_by_tier=dict(s.tokens_by_tier),
        cached_prompt_tokens=s.cached_prompt_tokens,
        cache_write_tokens=s.cache_write_tokens,
        requests_by_provider=dict(s.requests_by_provider),
        latency=pb.LatencySummary(
            count=s.latency.count,
            p50_ms=percentiles.get("p50", 0.0),
            p90_ms=percentiles.get("p90", 0.0),
            p99_ms=percentiles.get("p99", 0.0),
            max_ms=s.latency.max_ms,
        ),
        cost_usd=s.cost_usd,
        reference_cost_usd=s.reference_cost_usd,
        saved_usd=s.saved_usd,
        reference_provider=report.reference_provider,
        local_accuracy=[
            pb.TaskAccuracy(
                task=a.task,
                audited=a.audited,
                agreed=a.agreed,
                estimate=a.estimate,
                low=a.low,
                high=a.high,
                threshold=a.threshold,
                target=a.target,
            )
            for a in report.local_accuracy
        ],
        series=None if report.series is None else series_to_proto(report.series),
        tasks=[] if report.series is None else tasks_to_proto(report.series),
    )


def series_to_proto(series: DaySeries) -> pb.UsageSeries:
    return pb.UsageSeries(
        bucket_s=series.bucket_s,
        start_unix_s=int(series.start),
        requests=series.requests,
        requests_by_tier=_counts(series.requests_by_tier),
        escalations_by_reason=_counts(series.escalations_by_reason),
        tokens_by_provider=_counts(series.tokens_by_provider),
        latency_p50_ms=series.latency_p50_ms,
        latency_p99_ms=series.latency_p99_ms,
        cost_usd=series.cost_usd,
        reference_cost_usd=series.reference_cost_usd,
        clients=series.clients,
        burn=[
            pb.BudgetBurn(
                provider=b.provider,
                tokens_per_s=b.tokens_per_s,
                exhausted_at="" if b.exhausted_at is None else iso_utc(b.exhausted_at),
            )
            for b in series.burn
        ],
    )


def tasks_to_proto(series: DaySeries) -> list[pb.TaskUsage]:
    return [
        pb.TaskUsage(
            task=t.task,
            requests=t.requests,
            local=t.local,
            confidence_mean=t.confidence_mean,
            threshold=t.threshold,
        )
        for t in series.tasks
    ]


def _counts(series: Mapping[str, tuple[int, ...]]) -> list[pb.BucketCounts]:
    return [pb.BucketCounts(name=name, values=values) for name, values in series.items()]
