"""The embedded service's HTTP API (``/api/whatsapp/*``, ``/api/bookings``) and the sandbox's
fault-injection API: everything of the tool that knows the service's paths and answers."""

from __future__ import annotations

from typing import Any

import httpx

from rollout.checks.client import ServiceClient
from rollout.util.clock import Clock
from rollout.util.errors import MeasurementError


class EmbeddedClient(ServiceClient):
    """The embedded service, as its target, its provider and its checks ask it."""

    @classmethod
    def over(cls, service: ServiceClient) -> EmbeddedClient:
        """The embedded API on ``service``'s own connection (its URL, token and timeout; closed with it)."""
        if isinstance(service, EmbeddedClient):
            return service
        client = cls.__new__(cls)
        client.url, client.timeout, client.admin_token = service.url, service.timeout, service.admin_token
        client._admin, client._http = service._admin, service._http
        return client

    def metrics(self, window: float, above_ms: float | None = None) -> dict[str, Any]:
        """``GET /api/whatsapp/metrics?window=...[&above_ms=...]``; raises :class:`MeasurementError`."""
        above = "" if above_ms is None else f"&above_ms={float(above_ms)!r}"  # exact: the answer echoes it
        data = self.json("GET", f"/api/whatsapp/metrics?window={max(window, 0.001):g}{above}")
        if "attempts" not in data:
            raise MeasurementError(f"{self.url}: metrics answer lacks 'attempts'")
        return data

    def samples(self, metric: str, window: float, limit: int = 1000) -> dict[str, Any]:
        """``GET /api/whatsapp/samples``: per cohort, the latencies behind a compare metric."""
        data = self.json("GET", f"/api/whatsapp/samples?metric={metric}&window={max(window, 0.001):g}&limit={limit}")
        if not isinstance(data.get("treatment"), list) or not isinstance(data.get("control"), list):
            raise MeasurementError(f"{self.url}: samples answer lacks the cohorts")
        return data

    def hint_flag(self, token: str) -> dict[str, Any]:
        """``POST /api/whatsapp/flag/refresh``: ask the service to re-read its flag now (a hint, never
        a value); its answer. Raises :class:`MeasurementError`."""
        return self.json("POST", "/api/whatsapp/flag/refresh", headers={"Authorization": f"Bearer {token}"})

    def health(self) -> dict[str, Any]:
        """``GET /api/whatsapp/health``; raises :class:`MeasurementError`."""
        return self.json("GET", "/api/whatsapp/health")

    def fallbacks(self, limit: int) -> list[dict[str, Any]] | None:
        """The newest ``limit`` confirmations sent to the fallback outbox (admin); None when the service
        will not say (no admin token, an older service)."""
        response = self.request("GET", f"/api/whatsapp/fallbacks?limit={limit}", admin=True)
        if response.status_code != 200:
            return None
        try:
            found = response.json().get("fallbacks", [])
        except (ValueError, AttributeError):
            return None
        return found if isinstance(found, list) else None

    def book(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.request("POST", "/api/bookings", json=body)
        if response.status_code != 201:
            raise MeasurementError(f"booking refused: HTTP {response.status_code}: {response.text[:200]}")
        return response.json()

    def notification(self, booking_id: int) -> dict[str, Any]:
        return self.json("GET", f"/api/bookings/{booking_id}", admin=True)["notification"]

    def wait_notification(
        self, booking_id: int, done: tuple[str, ...], within: float, clock: Clock, poll: float = 0.1
    ) -> dict[str, Any]:
        """Poll until the notification's status is in ``done`` or ``within`` seconds pass (on ``clock``)."""
        deadline = clock.monotonic() + within
        while True:
            note = self.notification(booking_id)
            if note["status"] in done or clock.monotonic() >= deadline:
                return note
            clock.sleep(poll)


class SandboxControl:
    """The sandbox's fault-injection API."""

    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"), timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    def close(self) -> None:
        self._http.close()

    def faults(self, **changes: Any) -> dict[str, Any]:
        try:
            response = self._http.patch("/sandbox/faults", json=changes)
        except httpx.HTTPError as exc:
            raise MeasurementError(f"sandbox: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise MeasurementError(f"sandbox refused faults: HTTP {response.status_code}: {response.text[:200]}")
        return response.json()

    def clear(self) -> None:
        try:
            self._http.put("/sandbox/faults", json={})
        except httpx.HTTPError as exc:
            raise MeasurementError(f"sandbox: {type(exc).__name__}") from exc
