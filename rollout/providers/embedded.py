"""The ``embedded`` provider: the embedded service's own metrics endpoint."""

from __future__ import annotations

from typing import Any

from rollout.checks.service_api import ServiceClient
from rollout.playbook.builtin import PERCENTILES
from rollout.gates import Reading, embedded_reading
from rollout.playbook.model import MetricGate


class EmbeddedProvider:
    """The embedded service's ``/api/whatsapp/metrics``: one request per window per evaluation."""

    def __init__(self, service: ServiceClient) -> None:
        self._service = service
        self._answers: dict[tuple[float, float | None], dict[str, Any]] = {}

    def start_evaluation(self) -> None:
        self._answers = {}

    def answer(self, window: float, above_ms: float | None = None) -> dict[str, Any]:
        """The service's metrics over ``window`` (with the count of calls slower than ``above_ms``),
        asked once per evaluation."""
        key = (window, above_ms)
        if key not in self._answers:
            self._answers[key] = self._service.metrics(window, above_ms)
        return self._answers[key]

    def cohort_counts(self, window: float) -> tuple[int, int]:
        """Bookings whose cohort the service decided in the window: (in the cohort, out of it)."""
        decided = self.answer(window).get("cohort_decisions") or {}
        return int(decided.get("in") or 0), int(decided.get("out") or 0)

    def measure(self, spec: MetricGate, window: float, now: float, percent: int | None) -> Reading:
        # a percentile gate's evidence is how many calls were slower than its alert
        above = float(spec.alert) if spec.metric in PERCENTILES else None
        return embedded_reading(spec, self.answer(window, above), window)
