"""HTTP access to the target service and the sandbox's control API, for the engine's checks."""

from __future__ import annotations

from typing import Any

import httpx

from rollout.util import bounded
from rollout.util.clock import Clock
from rollout.util.errors import MeasurementError


class ServiceClient:
    """The rollout engine's view of one service. Each request has ``timeout`` seconds in total and
    its answer is read within :data:`~rollout.util.bounded.MAX_ANSWER_BYTES` (:mod:`rollout.util.bounded`):
    a service that trickles or floods holds a status page, a report or a confirmation no longer."""

    def __init__(
        self, url: str, admin_token: str = "", timeout: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._admin = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
        self._http = bounded.client(self.url, transport=transport)

    def close(self) -> None:
        self._http.close()

    def request(
        self, method: str, path: str, admin: bool = False, json: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """``path`` on this service, or a full URL anywhere; ``admin`` adds the admin token."""
        sent = {**(self._admin if admin else {}), **(headers or {})}
        where = path if path.startswith(("http://", "https://")) else f"{self.url}{path}"
        try:
            return bounded.exchange(
                self._http, method, path, bounded.Deadline(self.timeout), json=json, headers=sent or None
            )
        except bounded.AnswerRefused as exc:
            raise MeasurementError(f"{where}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise MeasurementError(f"{where}: {type(exc).__name__}") from exc

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.request(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError as exc:
            raise MeasurementError(f"{self.url}{path}: answer is not JSON (HTTP {response.status_code})") from exc
        if not isinstance(data, dict):
            raise MeasurementError(f"{self.url}{path}: answer is not a JSON object")
        if response.status_code >= 400:
            raise MeasurementError(f"{self.url}{path}: HTTP {response.status_code}: {data.get('error', data)}")
        return data

    def metrics(self, window: float, above_ms: float | None = None) -> dict[str, Any]:
        """``GET /api/whatsapp/metrics?window=...[&above_ms=...]``; raises :class:`MeasurementError`."""
        above = "" if above_ms is None else f"&above_ms={float(above_ms)!r}"  # exact: the answer echoes it
        data = self._json("GET", f"/api/whatsapp/metrics?window={max(window, 0.001):g}{above}")
        if "attempts" not in data:
            raise MeasurementError(f"{self.url}: metrics answer lacks 'attempts'")
        return data

    def samples(self, metric: str, window: float, limit: int = 1000) -> dict[str, Any]:
        """``GET /api/whatsapp/samples``: per cohort, the latencies behind a compare metric."""
        data = self._json("GET", f"/api/whatsapp/samples?metric={metric}&window={max(window, 0.001):g}&limit={limit}")
        if not isinstance(data.get("treatment"), list) or not isinstance(data.get("control"), list):
            raise MeasurementError(f"{self.url}: samples answer lacks the cohorts")
        return data

    def hint_flag(self, token: str) -> dict[str, Any]:
        """``POST /api/whatsapp/flag/refresh``: ask the service to re-read its flag now (a hint, never
        a value); its answer. Raises :class:`MeasurementError`."""
        return self._json("POST", "/api/whatsapp/flag/refresh", headers={"Authorization": f"Bearer {token}"})

    def health(self) -> dict[str, Any]:
        """``GET /api/whatsapp/health``; raises :class:`MeasurementError`."""
        return self._json("GET", "/api/whatsapp/health")

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
        return self._json("GET", f"/api/bookings/{booking_id}", admin=True)["notification"]

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
