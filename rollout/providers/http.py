"""Any JSON endpoint as a metric source: a value (and a sample count) picked by field paths."""

from __future__ import annotations

from typing import Literal

from rollout.gates import Reading
from rollout.playbook.model import HttpQuery, MetricGate, ProviderSpec
from rollout.playbook.plugins import ProviderPlugin
from rollout.providers.base import HttpProvider, number, placeholders, reading
from rollout.util.errors import MeasurementError
from rollout.util.jsonfields import dig


class HttpMetricsProvider(ProviderSpec):
    """Any JSON endpoint; each metric's query names the URL and the field paths (no ``url``: the
    environment's service_url)."""

    kind: Literal["http"] = "http"


class HttpMetrics(HttpProvider):
    """GET ``query.url`` (a path is joined to the provider's url), read ``query.value`` and ``query.samples``."""

    def measure(self, spec: MetricGate, window: float, now: float, percent: int | None) -> Reading:
        query = spec.query
        assert isinstance(query, HttpQuery)
        url = placeholders(query.url, window, percent)
        response = self._get(url, url)
        if response.status_code != 200:
            raise MeasurementError(f"{self.name}: {url}: HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError as exc:
            raise MeasurementError(f"{self.name}: {url}: answer is not JSON") from exc

        def pick(path: str) -> float | None:
            try:
                return number(dig(data, path), f"{self.name}: {url}: {path}")
            except KeyError:
                raise MeasurementError(f"{self.name}: {url}: no field {path!r} in the answer") from None

        value = pick(query.value)
        samples = pick(query.samples) if query.samples else None
        return reading(value, samples, window)


class HttpPlugin(ProviderPlugin):
    """The ``http`` metric provider, as a plugin."""

    name = "http"
    config = HttpMetricsProvider
    open = staticmethod(HttpMetrics.from_spec)
