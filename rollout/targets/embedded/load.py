"""The embedded service's own load: synthetic bookings, judged on the bookings created and, once the
outbox has sent what they queued, on the notifications the service reports."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from rollout.checks import CheckResult
from rollout.checks.load import LoadResult, Request, latency_checks, run_load, success_check
from rollout.playbook.model import LoadStep
from rollout.targets.embedded.bookings import synthetic_booking
from rollout.targets.embedded.client import EmbeddedClient
from rollout.util.clock import Clock

#: a booking the service accepted
CREATED = (201,)


def booking_requests(run: str) -> Callable[[int], Request]:
    """Request ``i`` of a booking load: a fresh synthetic booking."""
    return lambda i: (
        "POST",
        "/api/bookings",
        synthetic_booking(f"LOAD-{run}-{i}", f"load-{run}-{i}", event="Rollout load test"),
        None,
    )


def run_bookings(
    url: str,
    bookings: int | None = None,
    concurrency: int = 10,
    rate: float | None = None,
    duration: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """A bounded load of synthetic bookings against the service at ``url`` (``rollout load``)."""
    requests = booking_requests(uuid.uuid4().hex[:8])
    return run_load(url, requests, CREATED, bookings, concurrency, rate, duration, progress)


def booking_load(client: EmbeddedClient, step: LoadStep, clock: Clock, out: Any, label: str) -> list[CheckResult]:
    """A load step without a ``request``: bookings, then the notification figures over the run.
    Raises :class:`~rollout.util.errors.MeasurementError` when the service cannot report them."""
    total = step.requests if step.requests is not None else int((step.rate or 0) * (step.duration or 0))
    with out.progress(total, f"{label}: bookings") as advance:
        started = clock.time()
        result = run_bookings(client.url, step.requests, step.concurrency, step.rate, step.duration, advance)
    # let the outbox send what the load created, then read the notification figures over the run
    deadline = clock.monotonic() + step.drain
    while True:
        metrics = client.metrics(max(clock.time() - started, 1.0))
        if (metrics.get("outbox") or {}).get("pending", 0) == 0 or clock.monotonic() >= deadline:
            break
        clock.sleep(0.25)
    expect = step.expect
    checks = [success_check("booking success rate", result, expect.success_rate, "bookings created")]
    checks += [CheckResult(f"booking {c.name}", c.ok, c.detail) for c in latency_checks(result, expect)]
    if expect.notification_success_rate is not None:
        rate = metrics.get("success_rate")
        attempts = metrics.get("attempts", 0)
        checks.append(
            CheckResult(
                "notification success rate",
                rate is not None and rate >= expect.notification_success_rate,
                f"{'no data' if rate is None else f'{rate * 100:.2f}%'} of {attempts} notifications sent "
                f"(need >= {expect.notification_success_rate * 100:.2f}%)",
            )
        )
    out.line(
        f"  {result.created} bookings in {result.elapsed_s:.1f}s ({result.achieved_rate:.0f}/s), "
        f"p50 {result.p(50) or 0:.1f} ms, p95 {result.p(95) or 0:.1f} ms, p99 {result.p(99) or 0:.1f} ms"
    )
    return checks
