"""The seed plan's error scenarios, provoked through the sandbox and checked on the service.

Each scenario leaves the sandbox's faults cleared, whatever happens.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from rollout.checks import CheckResult
from rollout.targets.embedded.bookings import TEST_PHONE, synthetic_booking
from rollout.targets.embedded.client import EmbeddedClient, SandboxControl
from rollout.util.clock import Clock
from rollout.util.errors import MeasurementError


def _booking(phone: str = TEST_PHONE) -> dict[str, str]:
    ref = f"SCN-{uuid.uuid4().hex[:12]}"
    return synthetic_booking(ref, f"scenario-{ref}", phone, event="Rollout scenario")


def invalid_phone(service: EmbeddedClient, sandbox: SandboxControl, clock: Clock, within: float) -> tuple[bool, str]:
    """A booking with a landline number: the booking succeeds, its notification fails
    ``invalid_phone`` and goes to the fallback outbox; the provider is not called."""
    created = service.book(_booking(phone="+91 80 2345 6789"))
    note = service.wait_notification(created["id"], ("sent", "failed", "skipped"), within, clock)
    ok = note["status"] == "failed" and note["reason"] == "invalid_phone" and note.get("fallback") is not None
    return ok, (
        f"booking {created['id']} accepted; notification {note['status']}/{note['reason']}, "
        f"fallback {'yes' if note.get('fallback') else 'no'} (expected failed/invalid_phone with fallback)"
    )


def provider_timeout(service: EmbeddedClient, sandbox: SandboxControl, clock: Clock, within: float) -> tuple[bool, str]:
    """The provider hangs: the booking answers at once, the send times out once, is not resent
    (the provider may have it) and goes to the fallback outbox."""
    sandbox.faults(hang_rate=1.0, hang_seconds=min(within, 120))
    started = time.perf_counter()
    created = service.book(_booking())
    booking_ms = (time.perf_counter() - started) * 1000
    note = service.wait_notification(created["id"], ("sent", "failed", "skipped"), within, clock)
    ok = (
        note["status"] == "failed"
        and note["reason"] == "timeout"
        and note.get("fallback") is not None
        and note["attempts"] == 1
    )
    return ok, (
        f"booking answered in {booking_ms:.0f} ms; notification {note['status']}/{note['reason']} after "
        f"{note['attempts']} attempt(s), fallback {'yes' if note.get('fallback') else 'no'} "
        "(expected failed/timeout, 1 attempt, fallback)"
    )


def circuit_breaker(service: EmbeddedClient, sandbox: SandboxControl, clock: Clock, within: float) -> tuple[bool, str]:
    """The provider fails: the breaker opens after its threshold, later sends fail fast to the
    fallback outbox, and once the provider recovers the breaker half-opens and closes."""
    sandbox.faults(http_5xx_rate=1.0)
    deadline = clock.monotonic() + within
    opened = False
    sent = 0
    while clock.monotonic() < deadline and not opened:
        service.book(_booking())
        sent += 1
        clock.sleep(0.05)
        opened = (service.health().get("breaker") or {}).get("state") == "open"
    if not opened:
        return False, f"breaker did not open after {sent} failing bookings"
    fast = service.book(_booking())
    note = service.wait_notification(
        fast["id"], ("sent", "failed", "skipped"), max(1.0, deadline - clock.monotonic()), clock
    )
    if note["reason"] != "circuit_open":
        return False, f"breaker open but the next send ended {note['status']}/{note['reason']}, expected circuit_open"
    sandbox.clear()
    closed = False
    while clock.monotonic() < deadline and not closed:
        probe = service.book(_booking())
        result = service.wait_notification(
            probe["id"], ("sent", "failed", "skipped"), max(0.5, deadline - clock.monotonic()), clock
        )
        closed = result["status"] == "sent"
        if not closed:
            clock.sleep(0.25)
    state = (service.health().get("breaker") or {}).get("state")
    return closed and state == "closed", (
        f"breaker opened after {sent} failing bookings; next send failed fast (circuit_open) to the fallback outbox; "
        f"after recovery the breaker is {state}" + ("" if closed else " (did not close in time)")
    )


#: what a person waits for while a scenario runs
WAITS = {
    "circuit_breaker": "the circuit breaker to open, then to reset and close",
    "provider_timeout": "a provider call to time out",
}

SCENARIOS: dict[str, Callable[[EmbeddedClient, SandboxControl, Clock, float], tuple[bool, str]]] = {
    "invalid_phone": invalid_phone,
    "provider_timeout": provider_timeout,
    "circuit_breaker": circuit_breaker,
}


def run_scenario(
    name: str, label: str, service: EmbeddedClient, sandbox: SandboxControl | None, clock: Clock, within: float
) -> CheckResult:
    started = time.perf_counter()
    if sandbox is None:
        return CheckResult(label, False, "this scenario needs the environment's sandbox_url and sandbox_token")
    try:
        sandbox.clear()
        ok, detail = SCENARIOS[name](service, sandbox, clock, within)
    except MeasurementError as exc:
        ok, detail = False, str(exc)
    finally:
        try:
            sandbox.clear()
        except MeasurementError:
            pass
    return CheckResult(label, ok, detail, time.perf_counter() - started)
