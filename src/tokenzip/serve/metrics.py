"""Prometheus metrics of one server (own registry, so several apps in one process never clash)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120)


class Metrics:
    """Requests, latency, tokens in/out, tokens removed per stage, cache hits and bytes held, batch sizes."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("tokenzip_requests", "Requests answered", ["endpoint", "status"], registry=r)
        self.latency = Histogram("tokenzip_request_seconds", "Request latency (to the last byte)", ["endpoint"],
                                 buckets=_SECONDS, registry=r)
        self.ttft = Histogram("tokenzip_time_to_first_token_seconds", "Time to the first generated token",
                              ["endpoint"], buckets=_SECONDS, registry=r)
        self.prompt_tokens = Counter("tokenzip_prompt_tokens", "Prompt tokens received", registry=r)
        self.completion_tokens = Counter("tokenzip_completion_tokens", "Tokens generated", registry=r)
        self.removed = Counter("tokenzip_tokens_removed", "Tokens (prompt) or cache entries (kv) removed",
                               ["stage"], registry=r)
        self.upstream_tokens = Counter("tokenzip_upstream_prompt_tokens", "Prompt tokens sent upstream (proxy)",
                                       registry=r)
        self.cache_hits = Counter("tokenzip_cache_hits", "Context cache hits", registry=r)
        self.cache_misses = Counter("tokenzip_cache_misses", "Context cache misses (context prefilled)", registry=r)
        self.cache_bytes = Gauge("tokenzip_cache_bytes", "Bytes held by the context cache", registry=r)
        self.cache_entries = Gauge("tokenzip_cache_entries", "Contexts held by the context cache", registry=r)
        self.queue = Gauge("tokenzip_queue_depth", "Requests admitted and not finished", registry=r)
        self.cancelled = Counter("tokenzip_cancelled", "Generations stopped because the client went away",
                                 registry=r)
        self.rejected = Counter("tokenzip_rejected", "Requests refused because the queue was full", registry=r)
        self.batch_rows = Histogram("tokenzip_batch_rows", "Sequences run together in one forward pass",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)

    def record_stages(self, stages: list[dict[str, Any]]) -> None:
        """Count what each stage removed (rows: :meth:`tokenzip.pipeline.StageRecord.to_dict`; a cached one: 0)."""
        for row in stages:
            before, after = row.get("before"), row.get("after")
            if before is not None and after is not None and not row.get("cached"):
                self.removed.labels(row["stage"]).inc(max(0.0, float(before) - float(after)))

    def render(self) -> bytes:
        return generate_latest(self.registry)
