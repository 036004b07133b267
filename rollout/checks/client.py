"""HTTP access to the service being rolled out: requests on its URL, bounded in time and size.

What a target's own API means (the embedded service's metrics, bookings) is the target's, in its
folder (:mod:`rollout.targets.embedded.client`)."""

from __future__ import annotations

from typing import Any

import httpx

from rollout.util import bounded
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
        self.admin_token = admin_token
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

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """``path``'s answer as a JSON object; an answer that is not one, or an HTTP error, raises
        :class:`MeasurementError`."""
        response = self.request(method, path, **kwargs)
        data: dict[str, Any] = bounded.json_of(response, f"{self.url}{path}")
        if response.status_code >= 400:
            raise MeasurementError(f"{self.url}{path}: HTTP {response.status_code}: {data.get('error', data)}")
        return data
