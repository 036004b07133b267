"""PromQL over the Prometheus HTTP API, at the evaluation's time.

An empty vector is *no data* (a hold), never zero and never a pass. A query error names the query
and Prometheus' own message. A query that returns more than one series is refused: a gate judges
one number, so the query must aggregate (``sum(...)``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rollout.gates import Alerts, Reading
from rollout.playbook.model import CohortLabels, MetricGate, ProviderSpec
from rollout.playbook.plugins import ProviderPlugin
from rollout.providers.alerts import alerts_selector
from rollout.providers.base import HttpProvider, number, placeholders, reading
from rollout.stats import Cohort
from rollout.util.bounded import json_of
from rollout.util.errors import MeasurementError


class PrometheusProvider(ProviderSpec):
    """PromQL over the Prometheus HTTP API (``/api/v1/query``)."""

    kind: Literal["prometheus"] = "prometheus"
    url: str = Field(pattern=r"^https?://")


class PrometheusMetrics(HttpProvider):
    """One Prometheus server (``url``), with an optional bearer token."""

    def _api(self, path: str, promql: str, params: dict[str, str]) -> dict:
        """The ``data`` of one successful Prometheus query; anything else is a
        :class:`MeasurementError` naming the query."""
        return self._data(path, {"query": promql, **params}, f"query {promql!r}")

    def _data(self, path: str, params: dict[str, str], what: str) -> dict:
        """The ``data`` of one successful Prometheus API answer; anything else is a
        :class:`MeasurementError` naming ``what`` was asked."""
        body = json_of(self._get(path, what, params=params), self.name)
        if body.get("status") != "success":
            raise MeasurementError(
                f"{self.name}: {what} failed: {body.get('errorType', 'error')}: "
                f"{str(body.get('error', 'no message'))[:300]}"
            )
        data = body.get("data")
        return data if isinstance(data, dict) else {}

    def vector(self, promql: str, now: float) -> list[dict]:
        """The series ``promql`` returns at ``now`` (each ``{"metric": labels, "value": [ts, v]}``); a
        scalar comes back as one series without labels."""
        data = self._api("/api/v1/query", promql, {"time": f"{now:.3f}"})
        kind, result = data.get("resultType"), data.get("result")
        if kind in ("scalar", "string") and isinstance(result, list) and len(result) == 2:
            return [{"metric": {}, "value": result}]
        if kind != "vector" or not isinstance(result, list):
            raise MeasurementError(f"{self.name}: query {promql!r} returned a {kind}, not an instant vector")
        return result

    def query(self, promql: str, now: float) -> float | None:
        """The single value of ``promql`` at ``now``; None for an empty vector or NaN."""
        result = self.vector(promql, now)
        if not result:
            return None
        if len(result) > 1:
            raise MeasurementError(
                f"{self.name}: query {promql!r} returned {len(result)} series; a gate judges one "
                "number: aggregate it (sum(...), max(...))"
            )
        value = result[0].get("value") if isinstance(result[0], dict) else None
        if not isinstance(value, list) or len(value) != 2:
            raise MeasurementError(f"{self.name}: query {promql!r}: a sample without a value")
        return number(value[1], f"{self.name}: {promql!r}")

    def measure(self, spec: MetricGate, window: float, now: float, percent: int | None) -> Reading:
        if spec.kind == "alert":
            return self._alert(spec, window, now)
        assert isinstance(spec.query, str)
        if spec.per_sample:
            return self._ranked(spec, window, now, percent)
        if spec.kind == "compare":
            return self._compare(spec, window, now, percent)
        value = self.query(placeholders(spec.query, window, percent, promql=True), now)
        samples = self.query(placeholders(spec.samples, window, percent, promql=True), now) if spec.samples else None
        if spec.unit == "rate":
            # events of interest over all events: no events at all is no data, never a 0 % rate
            if not samples:
                return Reading(None, 0, window)
            return reading((value or 0.0) / samples, samples, window)
        return reading(value, samples, window)

    def _compare(self, spec: MetricGate, window: float, now: float, percent: int | None) -> Reading:
        """A rate per cohort: the same two queries with ``$cohort`` as each cohort's label value."""
        assert isinstance(spec.query, str) and spec.samples
        labels = spec.cohorts or CohortLabels()
        cohorts = []
        for label in (labels.treatment, labels.control):
            value = self.query(placeholders(spec.query.replace("$cohort", label), window, percent, promql=True), now)
            samples = self.query(
                placeholders(spec.samples.replace("$cohort", label), window, percent, promql=True), now
            )
            n = round(samples or 0)
            cohorts.append(Cohort((value or 0.0) / samples if samples else None, max(n, 0)))
        return Reading(None, min(c.samples for c in cohorts), window, cohorts=(cohorts[0], cohorts[1]), percent=percent)

    def _alert(self, spec: MetricGate, window: float, now: float) -> Reading:
        """A named alert: its rule must be loaded and healthy (else no data), then ``ALERTS{...}``
        with the metric's matchers says which series are pending and which fire."""
        assert spec.alertname is not None
        groups = self._data("/api/v1/rules", {"type": "alert"}, "the alerting rules").get("groups") or []
        rules = [r for g in groups if isinstance(g, dict) for r in g.get("rules") or [] if isinstance(r, dict)]
        rule = next((r for r in rules if r.get("name") == spec.alertname), None)
        if rule is None:
            loaded = sorted({str(r.get("name")) for r in rules})
            raise MeasurementError(
                f"{self.name}: no alerting rule {spec.alertname!r} is loaded"
                + (f" (loaded: {', '.join(loaded[:10])})" if loaded else " (no alerting rule is loaded)")
            )
        if rule.get("health") != "ok":
            problem = rule.get("lastError") or "not evaluated yet"
            raise MeasurementError(f"{self.name}: alerting rule {spec.alertname!r} cannot be read: {problem}")
        series = self.vector(alerts_selector(spec), now)
        found = [s.get("metric") or {} for s in series if isinstance(s, dict)]
        return Reading(
            None,
            1,
            window,
            alerts=Alerts(
                self.name,
                firing=tuple(s for s in found if s.get("alertstate") == "firing"),
                pending=tuple(s for s in found if s.get("alertstate") == "pending"),
            ),
        )

    def series(self, promql: str, start: float, end: float, step: float) -> list[float]:
        """The values of ``promql``'s one series from ``start`` to ``end`` every ``step`` seconds (NaN
        kept, for the judge to count); an empty matrix is no samples."""
        window = {"start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        result = self._api("/api/v1/query_range", promql, window).get("result")
        if not isinstance(result, list):
            raise MeasurementError(f"{self.name}: query {promql!r} did not return a matrix")
        if len(result) > 1:
            raise MeasurementError(
                f"{self.name}: query {promql!r} returned {len(result)} series per cohort; aggregate it (sum(...))"
            )
        points = result[0].get("values", []) if result and isinstance(result[0], dict) else []
        values = []
        for point in points:
            value = (
                number(point[1], f"{self.name}: {promql!r}") if isinstance(point, list) and len(point) == 2 else None
            )
            values.append(float("nan") if value is None else value)
        return values

    def _ranked(self, spec: MetricGate, window: float, now: float, percent: int | None) -> Reading:
        """A latency per cohort over the window, one sample per ``step`` (for the rank judge)."""
        assert isinstance(spec.query, str)
        labels, step = spec.cohorts or CohortLabels(), spec.step or 15.0
        treatment, control = (
            self.series(
                placeholders(spec.query.replace("$cohort", label), window, percent, promql=True),
                now - window,
                now,
                step,
            )
            for label in (labels.treatment, labels.control)
        )
        return Reading(
            None, min(len(treatment), len(control)), window, percent=percent, cohort_samples=(treatment, control)
        )


class PrometheusPlugin(ProviderPlugin):
    """The ``prometheus`` metric provider, as a plugin."""

    name = "prometheus"
    config = PrometheusProvider
    open = staticmethod(PrometheusMetrics.from_spec)
