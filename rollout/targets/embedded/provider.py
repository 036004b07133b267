"""The ``embedded`` provider: the embedded service's own metrics endpoint.

It lives with the target, not in :mod:`rollout.providers`: every line of it reads the service's
answers (their field names, which metric counts its samples where, how a cohort's figures are
laid out), so it changes when the service does and never when the tool does. The providers floor
learns of it through :func:`rollout.targets.own_providers`."""

from __future__ import annotations

import dataclasses
from typing import Any

from rollout.checks.client import ServiceClient
from rollout.gates import Reading, Verdict, judge_readings
from rollout.playbook.model import GateSet, MetricGate
from rollout.stats import Cohort
from rollout.targets.embedded.client import EmbeddedClient
from rollout.targets.embedded.forecast import last_hour
from rollout.targets.embedded.vocabulary import COMPARE_METRICS, MEANS, SAMPLES_OF


class EmbeddedProvider:
    """The embedded service's ``/api/whatsapp/metrics``: one request per window per evaluation."""

    def __init__(self, service: ServiceClient) -> None:
        self._service = EmbeddedClient.over(service)
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

    #: how ``plan`` names the traffic :meth:`last_hour` read, and the lack of it
    traffic_seen = "the embedded service's booking requests over the last hour"
    traffic_none = "the embedded service saw no bookings in the last hour"

    def last_hour(self, gates: GateSet, lookback: float, timeout: float) -> tuple[float | None, Any, list[str]]:
        """(requests per second, what the forecast may assume, said per metric) from the service's
        last ``lookback`` seconds, asked with a short ``timeout``
        (:func:`rollout.targets.embedded.forecast.last_hour`)."""
        client = EmbeddedClient(self._service.url, timeout=timeout)
        try:
            return last_hour(client, gates, lookback)
        finally:
            client.close()

    def cohort_counts(self, window: float) -> tuple[int, int]:
        """Bookings whose cohort the service decided in the window: (in the cohort, out of it)."""
        decided = self.answer(window).get("cohort_decisions") or {}
        return int(decided.get("in") or 0), int(decided.get("out") or 0)

    def measure(self, spec: MetricGate, window: float, now: float, percent: int | None) -> Reading:
        # a percentile gate's evidence is how many calls were slower than its alert
        above = float(spec.alert) if spec.percentile is not None else None
        reading = embedded_reading(spec, self.answer(window, above), window)
        if spec.per_sample:
            answer = self._service.samples(spec.metric, window)
            reading = dataclasses.replace(reading, cohort_samples=(answer["treatment"], answer["control"]))
        return reading


def cohort_of(metric: str, figures: dict[str, Any] | None) -> Cohort:
    """Read one cohort's :class:`Cohort` for ``metric`` from the service's ``cohorts`` answer."""
    spec, figures = COMPARE_METRICS[metric], figures or {}
    n = int(figures.get(spec["count"]) or 0)
    if spec["unit"] == "rate":
        return Cohort(int(figures.get(spec["events"]) or 0) / n if n else None, n)
    mean, sd = figures.get(spec["mean"]), figures.get(spec["sd"])
    return Cohort(None if mean is None else float(mean), n, None if sd is None else float(sd))


def embedded_reading(spec: MetricGate, answer: dict[str, Any], window: float) -> Reading:
    """One metric's reading from the embedded service's metrics answer over ``window``."""
    measured = float(answer.get("window_seconds", window))
    if spec.kind == "compare":
        cohorts = answer.get("cohorts") or {}
        treatment, control = (cohort_of(spec.metric, cohorts.get(c)) for c in ("treatment", "control"))
        # only a service that says its flag is off (or at 0 or 100 %) has nobody to compare: a missing
        # answer is no data, never a pass
        percent = 0 if answer.get("flag_enabled") is False else answer.get("rollout_percent")
        return Reading(
            None,
            min(treatment.samples, control.samples),
            measured,
            cohorts=(treatment, control),
            percent=percent if isinstance(percent, int) else None,
        )
    value = answer.get(spec.metric)
    sd = answer.get("latency_sd_ms") if spec.metric in MEANS else None
    above = answer.get("latency_above") or {}
    count = above.get("count") if spec.percentile is not None and above.get("threshold_ms") == spec.alert else None
    return Reading(
        None if value is None else float(value),
        int(answer.get(SAMPLES_OF[spec.metric]) or 0),
        measured,
        sd=None if sd is None else float(sd),
        above=None if count is None else int(count),
    )


def evaluate(gates: GateSet, measurements: dict[str, dict[str, Any]]) -> Verdict:
    """Judge every metric of ``gates``.

    ``measurements`` maps a window length (as ``str(seconds)``) to the service's metrics answer
    over that window, as :func:`windows_needed` asked for.
    """
    readings = []
    for spec in gates.metrics:
        window = spec.window or gates.window
        readings.append(embedded_reading(spec, measurements.get(str(window)) or {}, window))
    return judge_readings(gates, readings)
