"""The metric providers of one run, by name, and one evaluation of a gate set through them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import httpx

from rollout.checks.service_api import MeasurementError, ServiceClient
from rollout.gates import PERCENTILES, Reading, embedded_reading
from rollout.playbook.model import EMBEDDED, GateSet, MetricGate, Playbook


class Provider(Protocol):
    """Measures one metric over a window ending at ``now``."""

    def measure(self, spec: MetricGate, window: float, now: float, percent: int | None) -> Reading: ...


def placeholders(text: str, window: float, percent: int | None, promql: bool = False) -> str:
    """``$window`` (``30s`` in PromQL, ``30`` elsewhere) and ``$percent`` (the cohort's share now)."""
    if promql:
        shown = f"{int(window)}s" if float(window).is_integer() else f"{max(1, round(window * 1000))}ms"
    else:
        shown = f"{window:g}"
    return text.replace("$window", shown).replace("$percent", str(percent if percent is not None else 0))


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


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise MeasurementError(f"{what} is not a number ({type(value).__name__})")
    try:
        number = float(value)
    except ValueError as exc:
        raise MeasurementError(f"{what} is not a number ({str(value)[:40]!r})") from exc
    return number if number == number and abs(number) != float("inf") else None  # NaN and Inf: no data


def reading(value: float | None, samples: float | None, window: float) -> Reading:
    """A reading from a value and a sample count; without a sample query, a value counts as one."""
    count = int(round(samples)) if samples is not None else (1 if value is not None else 0)
    return Reading(value, max(count, 0), window)


class MetricSources:
    """The providers a playbook names, plus ``embedded``; :meth:`read` measures a gate set."""

    def __init__(self, providers: dict[str, Provider]) -> None:
        self.providers = providers

    @classmethod
    def build(cls, playbook: Playbook, service: ServiceClient, secret: Callable[[str], str],
              http_client: httpx.Client | None = None) -> MetricSources:
        """Providers for ``playbook``; ``secret`` resolves a ``${REFERENCE}`` (and registers it for
        redaction)."""
        from rollout.metrics.http import HttpMetrics
        from rollout.metrics.prometheus import PrometheusMetrics

        providers: dict[str, Provider] = {EMBEDDED: EmbeddedProvider(service)}
        for name, spec in playbook.providers.items():
            token = secret(spec.token) if spec.token else None
            if spec.kind == "prometheus":
                providers[name] = PrometheusMetrics(spec.url, token, spec.timeout, name)
            else:
                providers[name] = HttpMetrics(spec.url or service.url, token, spec.timeout, name)
        return cls(providers)

    def read(self, gates: GateSet, now: float, percent: int | None, cap: float | None = None) -> list[Reading]:
        """One reading per metric of ``gates``; a metric that cannot be measured carries its error."""
        for provider in self.providers.values():
            if hasattr(provider, "start_evaluation"):
                provider.start_evaluation()
        readings = []
        for spec in gates.metrics:
            window = spec.window or gates.window
            effective = min(window, cap) if cap else window
            try:
                readings.append(self.providers[spec.provider].measure(spec, effective, now, percent))
            except MeasurementError as exc:
                readings.append(Reading(None, 0, effective, error=str(exc)))
            except Exception as exc:  # noqa: BLE001 - a provider's surprise is no data (a hold), never a crash
                readings.append(Reading(None, 0, effective, error=f"{spec.provider}: {type(exc).__name__}: {exc}"))
        return readings

    def close(self) -> None:
        for provider in self.providers.values():
            if hasattr(provider, "close"):
                provider.close()

