"""What operators read: Prometheus metrics, JSON logs, request counters, usage records and reports, pricing."""
