"""HTTP checks: requests with expected statuses and JSON fields, retried until they hold or time runs out.

A target's own checks (the embedded service's bookings and health) are in its folder."""

from __future__ import annotations

import time
from collections.abc import Callable

from rollout.checks import CheckResult
from rollout.checks.client import ServiceClient
from rollout.playbook.model import HttpCheck
from rollout.util.clock import Clock
from rollout.util.errors import MeasurementError
from rollout.util.jsonfields import dig


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
