"""What every metric provider is, and the few helpers they share: placeholders in queries, a
number read from an answer (NaN is no data, an infinity a reading error), a reading from a value
and a sample count, and what no measurement can be (:func:`impossible`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol, Self

import httpx

from rollout.gates import Reading
from rollout.playbook.model import MetricGate, ProviderSpec
from rollout.util import bounded
from rollout.util.errors import MeasurementError


class Provider(Protocol):
    """Measures one metric over a window ending at ``now``."""

    def measure(self, spec: MetricGate, window: float, now: float, percent: int | None) -> Reading: ...


class HttpProvider:
    """A provider that asks one HTTP server (``url``), with an optional bearer token; a test may
    hand it a ``transport``."""

    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float,
        name: str,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name, self.timeout = name, timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = bounded.client(url.rstrip("/"), headers, transport)

    @classmethod
    def from_spec(cls, spec: ProviderSpec, name: str, service_url: str, secret: Callable[[str], str]) -> Self:
        """The provider a playbook's ``providers.NAME`` configures (no url: the environment's service);
        ``secret`` resolves its token reference."""
        return cls(spec.url or service_url, secret(spec.token) if spec.token else None, spec.timeout, name)

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, what: str, **kwargs: Any) -> httpx.Response:
        """One GET, its whole answer read within the provider's timeout (in all, not per read) and
        a size cap; anything else is a :class:`MeasurementError` naming ``what`` was asked."""
        try:
            return bounded.exchange(self._http, "GET", path, bounded.Deadline(self.timeout), **kwargs)
        except bounded.AnswerRefused as exc:
            raise MeasurementError(f"{self.name}: {what}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise MeasurementError(f"{self.name}: {self._http.base_url} unreachable ({type(exc).__name__})") from exc


def placeholders(text: str, window: float, percent: int | None, promql: bool = False) -> str:
    """``$window`` (``30s`` in PromQL, ``30`` elsewhere) and ``$percent`` (the cohort's share now)."""
    if promql:
        shown = f"{int(window)}s" if float(window).is_integer() else f"{max(1, round(window * 1000))}ms"
    else:
        shown = f"{window:g}"
    return text.replace("$window", shown).replace("$percent", str(percent if percent is not None else 0))


def number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise MeasurementError(f"{what} is not a number ({type(value).__name__})")
    try:
        number = float(value)
    except ValueError as exc:
        raise MeasurementError(f"{what} is not a number ({str(value)[:40]!r})") from exc
    if math.isinf(number):
        raise MeasurementError(f"{what} is {number}, which no measurement is")
    return None if math.isnan(number) else number  # NaN: Prometheus' 0/0, no events in the window


def reading(value: float | None, samples: float | None, window: float) -> Reading:
    """A reading from a value and a sample count; without a sample query, a value counts as one."""
    count = round(samples) if samples is not None else (1 if value is not None else 0)
    return Reading(value, max(count, 0), window)


#: a latency longer than this (ms, about 11.6 days) is no request's: the provider is wrong
MAX_LATENCY_MS = 1e9


def _out_of_range(unit: str, value: float) -> str | None:
    if not math.isfinite(value):
        return f"{value}"
    if unit == "latency" and not 0 <= value <= MAX_LATENCY_MS:
        return f"a latency of {value:g} ms"
    if unit == "rate" and not 0 <= value <= 1:
        return f"a rate of {value:g}"
    if unit == "count" and value < 0:
        return f"a count of {value:g}"
    return None


def impossible(spec: MetricGate, got: Reading) -> str | None:
    """Why ``got`` cannot be a measurement of ``spec`` (an infinite or NaN value, a negative or
    endless latency, a rate outside 0-1, a negative count, in its value, its cohorts or a rank
    judge's samples), or None. Such a reading is a provider error (a hold, counted toward
    ``error_limit``), never a pass. A rank judge's NaN samples stay: they are points without
    traffic, dropped and counted by the judge."""
    unit = spec.unit
    values: list[tuple[str, float | None]] = [("value", got.value)]
    if got.sd is not None:
        values.append(("standard deviation", got.sd if got.sd >= 0 else float("nan")))
    for name, cohort in zip(("treatment", "control"), got.cohorts or (), strict=False):
        values.append((name, cohort.value))
        if cohort.sd is not None:
            values.append((f"{name} standard deviation", cohort.sd if cohort.sd >= 0 else float("nan")))
    for name, samples in zip(("treatment", "control"), got.cohort_samples or (), strict=False):
        for sample in samples:
            if isinstance(sample, bool) or not isinstance(sample, int | float):
                return f"{spec.metric}: a {name} sample is not a number ({str(sample)[:40]!r})"
            if not math.isnan(sample) and (problem := _out_of_range(unit, float(sample))) is not None:
                return f"{spec.metric}: a {name} sample is {problem}, which no measurement is"
    for name, value in values:
        if value is not None and (problem := _out_of_range(unit if "deviation" not in name else "", value)):
            return f"{spec.metric}: its {name} is {problem}, which no measurement is"
    return None
