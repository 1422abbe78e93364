"""Prometheus metrics of one server, in a registry of its own (several apps can live in one
process, as in tests). Names follow Prometheus conventions: counters end in _total, durations
are seconds.

- tourney_requests_total{mode, outcome}: questions answered, by whose answer stands (student,
  teacher, fallback) or by failure (error_502, error_504, ...); rejected HTTP requests are
  tourney_rejected_total{status}
- tourney_escalated_total{mode}, tourney_escalation_share{mode}: teacher calls made by the router
  modes, and their share of the mode's questions since the server started
- tourney_fallbacks_total{mode, reason}: answers not from the chosen model (deadline, error)
- tourney_model_latency_seconds{model}: one model call as the engine waited for it (queue included)
- tourney_request_latency_seconds{mode}: end to end, from the body read to the answer decided
- tourney_batch_size{model}, tourney_queue_depth{model}, tourney_inflight_requests
- tourney_upstream_errors_total{model, kind}: failed model calls (HTTP status, timeout, exception)
"""
from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("tourney_requests_total", "Questions answered, by mode and outcome",
                                ["mode", "outcome"], registry=r)
        self.rejected = Counter("tourney_rejected_total", "HTTP requests refused before answering, by status",
                                ["status"], registry=r)
        self.escalated = Counter("tourney_escalated_total", "Questions the router sent to the teacher",
                                 ["mode"], registry=r)
        self.escalation_share = Gauge("tourney_escalation_share",
                                      "Share of the mode's questions sent to the teacher since start", ["mode"], registry=r)
        self.fallbacks = Counter("tourney_fallbacks_total", "Answers not from the model the policy chose",
                                 ["mode", "reason"], registry=r)
        self.model_latency = Histogram("tourney_model_latency_seconds", "One model call, queueing included",
                                       ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.request_latency = Histogram("tourney_request_latency_seconds", "End to end per question",
                                         ["mode"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("tourney_batch_size", "Questions per model call", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("tourney_queue_depth", "Questions waiting for a model", ["model"], registry=r)
        self.inflight = Gauge("tourney_inflight_requests", "HTTP requests being answered", registry=r)
        self.upstream_errors = Counter("tourney_upstream_errors_total", "Failed model calls", ["model", "kind"],
                                       registry=r)
        self._lock = threading.Lock()
        self._answered: dict[str, int] = {}
        self._up: dict[str, int] = {}

    def answered(self, mode: str, outcome: str, escalated: bool, latency_s: float) -> None:
        self.requests.labels(mode, outcome).inc()
        self.request_latency.labels(mode).observe(latency_s)
        if mode.startswith("router"):
            with self._lock:
                self._answered[mode] = self._answered.get(mode, 0) + 1
                self._up[mode] = self._up.get(mode, 0) + int(escalated)
                share = self._up[mode] / self._answered[mode]
            if escalated:
                self.escalated.labels(mode).inc()
            self.escalation_share.labels(mode).set(share)

    def render(self) -> bytes:
        return generate_latest(self.registry)
