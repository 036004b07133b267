"""Smoke and health checks: HTTP requests with expected statuses and JSON fields."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from rollout.checks import CheckResult
from rollout.checks.bookings import synthetic_booking
from rollout.checks.service_api import ServiceClient
from rollout.playbook.model import BookingCheck, HealthStep, HttpCheck
from rollout.util.clock import Clock
from rollout.util.errors import MeasurementError
from rollout.util.jsonfields import dig
from rollout.util.redact import Redactor


def _http_once(client: ServiceClient, check: HttpCheck, headers: dict[str, str]) -> tuple[bool, str]:
    response = client.request(
        check.method, check.url or check.path or "/", admin=check.admin, json=check.body, headers=headers
    )
    statuses = check.expect.status if isinstance(check.expect.status, list) else [check.expect.status]
    if response.status_code not in statuses:
        return False, f"HTTP {response.status_code}, expected {'/'.join(map(str, statuses))}: {response.text[:200]}"
    if check.expect.json_fields:
        try:
            data = response.json()
        except ValueError:
            return False, f"HTTP {response.status_code}, answer is not JSON"
        for path, expected in check.expect.json_fields.items():
            try:
                actual = dig(data, path)
            except (KeyError, IndexError):
                return False, f"{path} missing from the answer"
            if actual != expected:
                return False, f"{path} is {actual!r}, expected {expected!r}"
    return True, f"HTTP {response.status_code}" + (
        f", {', '.join(f'{k}={v!r}' for k, v in check.expect.json_fields.items())}" if check.expect.json_fields else ""
    )


def run_http(
    client: ServiceClient, check: HttpCheck, clock: Clock, secret: Callable[[str], str] | None = None
) -> CheckResult:
    """Send ``check`` until its expectation holds or ``check.within`` passes; header references are
    resolved by ``secret`` (which also registers them for redaction)."""
    started = time.perf_counter()
    deadline = clock.monotonic() + check.within
    headers = {k: (secret(v) if secret else v) for k, v in check.headers.items()}
    while True:
        try:
            ok, detail = _http_once(client, check, headers)
        except MeasurementError as exc:
            ok, detail = False, str(exc)
        if ok or clock.monotonic() >= deadline:
            return CheckResult(check.name, ok, detail, time.perf_counter() - started)
        clock.sleep(0.2)


def run_booking(client: ServiceClient, check: BookingCheck, clock: Clock) -> CheckResult:
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


def run_health(client: ServiceClient, step: HealthStep, clock: Clock, name: str, redactor: Redactor) -> CheckResult:
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
