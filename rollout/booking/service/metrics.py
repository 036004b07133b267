"""What the gates read: window metrics from the event table, and Prometheus counters.

Definitions (also in the README):

- ``attempts``: notifications that went down the WhatsApp path in the window and finished
  (``successes + failures``); invalid phone numbers are counted apart (``invalid_phone``) because
  they say nothing about the integration.
- ``success_rate`` = successes / attempts; ``None`` when there were no attempts (no data is never a pass).
- ``error_rate`` = failed provider calls / provider calls, retries included: it rises before
  the success rate does, because retries hide errors from the customer but not from this rate.
- ``avg_latency_ms`` and ``p95_latency_ms``: provider call latency; ``latency_samples`` calls.
- ``breaker_activations``: transitions of the circuit breaker to open.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

from rollout.booking.service.store import Store
from rollout.util.numbers import percentile

SKIP_REASONS = ("flag_off", "not_in_cohort", "opted_out")
#: the final outcomes of a notification
OUTCOMES = ("sent", "failed", "skipped")


def window_metrics(store: Store, now: float, window: float, above_ms: float | None = None) -> dict[str, Any]:
    """The gate metrics over ``[now - window, now]``; with ``above_ms``, also how many provider
    calls took longer (a percentile gate's evidence)."""
    since = now - window
    counts = store.event_counts(since)

    def total(kind: str, reason: str | None = None, exclude: str | None = None) -> int:
        return sum(
            n
            for (k, r), n in counts.items()
            if k == kind and (reason is None or r == reason) and (exclude is None or r != exclude)
        )

    successes = total("sent")
    failures = total("failed", exclude="invalid_phone")
    attempts = successes + failures
    calls_ok, calls_error = total("call_ok"), total("call_error")
    calls = calls_ok + calls_error
    latencies = store.call_latencies(since)
    failure_reasons: dict[str, int] = {}
    for (kind, reason), n in counts.items():
        if kind == "failed" and reason != "invalid_phone":
            failure_reasons[reason or "unknown"] = failure_reasons.get(reason or "unknown", 0) + n
    skipped = {reason: total("skipped", reason) for reason in SKIP_REASONS}
    return {
        "window_seconds": window,
        "since": since,
        "until": now,
        "attempts": attempts,
        "successes": successes,
        "failures": failures,
        "failure_reasons": failure_reasons,
        "invalid_phone": total("failed", "invalid_phone"),
        "fallbacks": total("fallback"),
        "skipped": sum(skipped.values()),
        "skipped_by_reason": skipped,
        "provider_calls": calls,
        "provider_errors": calls_error,
        "success_rate": successes / attempts if attempts else None,
        "error_rate": calls_error / calls if calls else None,
        "avg_latency_ms": sum(latencies) / len(latencies) if latencies else None,
        "p95_latency_ms": percentile(latencies, 95),
        "latency_samples": len(latencies),
        "latency_sd_ms": statistics.stdev(latencies) if len(latencies) > 1 else None,
        "latency_above": None
        if above_ms is None
        else {"threshold_ms": above_ms, "count": sum(1 for latency in latencies if latency > above_ms)},
        "breaker_activations": total("breaker_open"),
        # each booking's cohort, counted once, when the flag was on and the sender decided it: the
        # sample-ratio check compares these with the percentage
        "cohort_decisions": {"in": total("cohort", "in"), "out": total("cohort", "out")},
        "cohorts": cohort_metrics(store.cohort_stats(since)),
    }


def _spread(n: float, mean: float | None, square: float | None) -> float | None:
    """The sample standard deviation from a count, a mean and a mean square."""
    if n < 2 or mean is None or square is None:
        return None
    return math.sqrt(max(0.0, square - mean * mean) * n / (n - 1))


_NO_FIGURES: dict[str, Any] = {"n": 0, "mean": None, "square": None}


def cohort_metrics(stats: dict[tuple[str, str], dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per cohort (``treatment``: flag on and in the rollout; ``control``: everyone else): booking
    requests, the service's errors on them, their latency, and the delay from booking to the
    confirmation leaving the service (what the ``compare`` gate judges)."""
    out = {}
    for cohort in ("treatment", "control"):
        ok = stats.get(("booking", cohort)) or _NO_FIGURES
        bad = stats.get(("booking_error", cohort)) or _NO_FIGURES
        confirmed = stats.get(("confirmation", cohort)) or _NO_FIGURES
        n = ok["n"] + bad["n"]
        mean = square = None
        if n:  # one latency over every request, failed ones too
            mean = ((ok["mean"] or 0.0) * ok["n"] + (bad["mean"] or 0.0) * bad["n"]) / n
            square = ((ok["square"] or 0.0) * ok["n"] + (bad["square"] or 0.0) * bad["n"]) / n
        out[cohort] = {
            "booking_requests": n,
            "booking_errors": bad["n"],
            "booking_error_rate": bad["n"] / n if n else None,
            "booking_latency_ms": mean,
            "booking_latency_sd_ms": _spread(n, mean, square),
            "confirmations": confirmed["n"],
            "confirmation_delay_ms": confirmed["mean"],
            "confirmation_delay_sd_ms": _spread(confirmed["n"], confirmed["mean"], confirmed["square"]),
        }
    return out


class _Labelled:
    """A collector that adds constant labels to every sample of another registry."""

    def __init__(self, inner: CollectorRegistry, labels: dict[str, str]) -> None:
        self._inner, self._labels = inner, labels

    def collect(self) -> Iterator[Metric]:
        for family in self._inner.collect():
            family.samples = [s._replace(labels={**s.labels, **self._labels}) for s in family.samples]
            yield family


class PromMetrics:
    """Cumulative counters for ``GET /metrics`` (Prometheus computes rates from them).

    In a fleet every series carries ``replica="<id>"``, so one Prometheus scraping every replica
    can sum them (``sum(rate(...))``) or tell them apart; alone, the series have no extra label.
    """

    def __init__(self, replica: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self._exposed = self.registry
        if replica is not None:
            self._exposed = CollectorRegistry()
            self._exposed.register(_Labelled(self.registry, {"replica": replica}))
        self.notifications = Counter(
            "rollout_whatsapp_notifications",
            "Notifications by final outcome and its reason",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.outcomes = Counter(
            "rollout_whatsapp_notification_outcomes",
            "Notifications by final outcome; every outcome exported from the start, at 0",
            ["outcome"],
            registry=self.registry,
        )
        # A series Prometheus has never seen has no earlier sample to count from: increase() over
        # its first scrape is empty and its first value is lost as the baseline. Exported at 0 from
        # the start, the first failure is counted at the first scrape after it (the gate's floor).
        for outcome in OUTCOMES:
            self.outcomes.labels(outcome)
        self.calls = Counter(
            "rollout_whatsapp_provider_calls", "Provider calls by result", ["result"], registry=self.registry
        )
        self.latency = Histogram(
            "rollout_whatsapp_provider_latency_seconds",
            "Provider call latency",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "rollout_whatsapp_fallbacks", "Confirmations sent to the fallback outbox", registry=self.registry
        )
        self.breaker_activations = Counter(
            "rollout_whatsapp_breaker_activations", "Circuit breaker transitions to open", registry=self.registry
        )
        self.breaker_open = Gauge(
            "rollout_whatsapp_breaker_open", "1 while the breaker is open or half-open", registry=self.registry
        )
        self.flag = Gauge("rollout_whatsapp_enabled", "WHATSAPP_NOTIFICATIONS_ENABLED", registry=self.registry)
        self.percent = Gauge("rollout_whatsapp_rollout_percent", "WHATSAPP_ROLLOUT_PERCENT", registry=self.registry)
        self.pending = Gauge(
            "rollout_whatsapp_outbox_pending", "Notifications waiting to be sent", registry=self.registry
        )
        self.bookings = Counter(
            "rollout_booking_requests",
            "Booking requests by cohort and outcome",
            ["cohort", "outcome"],
            registry=self.registry,
        )
        self.booking_latency = Histogram(
            "rollout_booking_request_seconds",
            "Booking request latency by cohort",
            ["cohort"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.confirmation_delay = Histogram(
            "rollout_confirmation_delay_seconds",
            "Booking to confirmation handed off, by cohort",
            ["cohort"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=self.registry,
        )

    def notified(self, outcome: str, reason: str | None) -> None:
        """One notification ended ``outcome`` (sent, failed, skipped) for ``reason``."""
        self.notifications.labels(outcome, reason or "").inc()
        self.outcomes.labels(outcome).inc()

    def exposition(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self._exposed)
