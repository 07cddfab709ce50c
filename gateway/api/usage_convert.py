"""UsageReport -> GetUsageResponse, a pure function (the dashboard's JSON comes from the same report)."""

from __future__ import annotations

from gateway.observe.usage_report import UsageReport
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
    )
