"""The embedded service's own checks: a synthetic booking through the real flow, and its health page."""

from __future__ import annotations

import time
import uuid

from rollout.checks import CheckResult
from rollout.playbook.model import HealthStep
from rollout.targets.embedded.bookings import synthetic_booking
from rollout.targets.embedded.client import EmbeddedClient
from rollout.targets.embedded.steps import BookingCheck
from rollout.util.clock import Clock
from rollout.util.errors import MeasurementError
from rollout.util.redact import Redactor


def run_booking(client: EmbeddedClient, check: BookingCheck, clock: Clock) -> CheckResult:
    """A real booking through the real flow; waits for its notification's final state."""
    started = time.perf_counter()
    ref = f"SMOKE-{uuid.uuid4().hex[:12]}"
    body = synthetic_booking(ref, check.customer_id or f"smoke-{ref}", check.phone, event="Rollout smoke test")
    try:
        created = client.book(body)
        final = ("sent", "failed", "skipped") if check.expect != "pending" else ("pending",)
        note = client.wait_notification(created["id"], final, check.within, clock)
    except MeasurementError as exc:
        return CheckResult(check.name, False, str(exc), time.perf_counter() - started)
    ok = note["status"] == check.expect and (check.reason is None or note.get("reason") == check.reason)
    expected = check.expect + (f"/{check.reason}" if check.reason else "")
    detail = f"booking {created['id']} ({ref}): notification {note['status']}/{note.get('reason')}"
    if not ok:
        detail += f", expected {expected}"
    return CheckResult(
        check.name, ok, detail, time.perf_counter() - started, {"booking_id": created["id"], "notification": note}
    )


def run_health(client: EmbeddedClient, step: HealthStep, clock: Clock, name: str, redactor: Redactor) -> CheckResult:
    started = time.perf_counter()
    deadline = clock.monotonic() + step.within
    while True:
        try:
            health = client.health()
            ok = health.get("status") in step.expect and (step.flag is None or health.get("flag_enabled") == step.flag)
            detail = (
                f"status {health.get('status')} (expected {'/'.join(step.expect)}), "
                f"flag {'on' if health.get('flag_enabled') else 'off'}, breaker "
                f"{(health.get('breaker') or {}).get('state')}"
            )
            if health.get("problems"):
                detail += f", problems: {'; '.join(health['problems'])}"
        except MeasurementError as exc:
            ok, detail, health = False, str(exc), {}
        if ok or clock.monotonic() >= deadline:
            return CheckResult(name, ok, redactor.text(detail), time.perf_counter() - started, {"health": health})
        clock.sleep(0.2)
