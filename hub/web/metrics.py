"""Prometheus text exposition (format 0.0.4) without a client library: a few counters
and one latency histogram kept here, gauges read from the hub at scrape time."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUCKETS", "HttpMetrics", "ingest_samples", "notify_samples", "render"]

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1


@dataclass
class HttpMetrics:
    """Request counts by (route, method, status) and latency by (route, method)."""

    requests: dict[tuple[str, str, int], int] = field(default_factory=dict)
    latency: dict[tuple[str, str], _Histogram] = field(default_factory=dict)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        h = self.latency.get((route, method))
        if h is None:
            h = self.latency[(route, method)] = _Histogram()
        h.observe(seconds)

    def lines(self) -> Iterable[str]:
        yield "# HELP cityops_http_requests_total HTTP requests served, by route and status."
        yield "# TYPE cityops_http_requests_total counter"
        for (route, method, status), n in sorted(self.requests.items()):
            yield f'cityops_http_requests_total{{route="{_esc(route)}",method="{method}",status="{status}"}} {n}'
        yield "# HELP cityops_http_request_duration_seconds Time to answer a request."
        yield "# TYPE cityops_http_request_duration_seconds histogram"
        for (route, method), h in sorted(self.latency.items()):
            labels = f'route="{_esc(route)}",method="{method}"'
            running = 0
            for bound, count in zip(BUCKETS, h.counts, strict=False):
                running += count
                yield f'cityops_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {running}'
            yield f'cityops_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {h.n}'
            yield f"cityops_http_request_duration_seconds_sum{{{labels}}} {h.total:.6f}"
            yield f"cityops_http_request_duration_seconds_count{{{labels}}} {h.n}"


Sample = tuple[str, str, str, list[tuple[dict[str, str], float]]]


def ingest_samples(ingest: dict[str, int], health: dict[str, object]) -> list[Sample]:
    """The ingest accounting and the writer's supervision, from the writer's counters
    (``IngestStats``) and the hub's health. After the writer has drained:
    ``received == sum(messages by kind)``, and per events message
    ``sum(event outcomes) == events_received``."""
    n = ingest.get
    return [
        ("cityops_ingest_messages_received_total", "counter",
         "Messages handed to the writer (every message the broker delivered to the hub).",
         [({}, n("received", 0))]),
        ("cityops_ingest_messages_total", "counter",
         "Messages applied, by what they were: events (at least one good event), refused "
         "(a dead letter), status, telemetry, snapshot.",
         [({"kind": kind}, n(key, 0)) for kind, key in (
             ("events", "event_messages"), ("refused", "refused"), ("status", "statuses"),
             ("telemetry", "telemetry"), ("snapshot", "snapshots"))]),
        ("cityops_ingest_event_outcomes_total", "counter",
         "Events of the events messages, by outcome (conflict, refused and seq_out_of_window "
         "are dead letters).",
         [({"outcome": outcome}, n(key, 0)) for outcome, key in (
             ("stored", "events_stored"), ("duplicate", "duplicates"), ("conflict", "conflicts"),
             ("refused", "events_refused"), ("seq_out_of_window", "seq_out_of_window"))]),
        ("cityops_ingest_dead_letter_failures_total", "counter",
         "Refusals whose dead letter could not be written as given (a minimal one was, or "
         "the log has it).", [({}, n("dead_letter_failures", 0))]),
        ("cityops_writer_restarts_total", "counter",
         "Times the writer's loop failed unexpectedly and was restarted.",
         [({}, n("writer_restarts", 0))]),
        ("cityops_writer_up", "gauge", "1 while the writer thread runs.",
         [({}, 1 if health.get("writer") else 0)]),
    ]


def notify_samples(counts: dict[tuple[str, str], int], stats: Any) -> list[Sample]:
    """The notification outbox: rows by state (from the store) and this run's attempts,
    sends and dead deliveries by channel (``hub.notify.service.NotifierStats``)."""
    by_state: dict[str, int] = dict.fromkeys(("queued", "sending", "sent", "failed", "dead"), 0)
    for (state, _), n in counts.items():
        by_state[state] = by_state.get(state, 0) + n
    out: list[Sample] = [
        ("cityops_notifications", "gauge", "Notification deliveries by state (failed: waiting "
         "for a retry; dead: given up, with a reason on the case page).",
         [({"state": s}, n) for s, n in sorted(by_state.items())]),
    ]
    for name, attr, help_text in (
            ("cityops_notifications_attempts_total", "attempts", "Delivery attempts this run, by channel."),
            ("cityops_notifications_sent_total", "sent", "Deliveries sent this run, by channel."),
            ("cityops_notifications_failed_total", "failed", "Failed delivery attempts this run, by channel."),
            ("cityops_notifications_dead_total", "dead", "Deliveries given up this run, by channel.")):
        values = getattr(stats, attr, {}) if stats is not None else {}
        out.append((name, "counter", help_text, [({"channel": c}, n) for c, n in sorted(values.items())]))
    return out


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(samples: list[tuple[str, str, str, list[tuple[dict[str, str], float]]]],
           http: HttpMetrics) -> str:
    """``samples``: (name, type, help, [(labels, value)]) for the gauges and counters."""
    out: list[str] = []
    for name, kind, help_text, values in samples:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in values:
            lab = ",".join(f'{k}="{_esc(str(v))}"' for k, v in labels.items())
            out.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")
    out.extend(http.lines())
    return "\n".join(out) + "\n"
