"""What every metric provider is, and the few helpers they share: placeholders in queries, a
number read from an answer (NaN and Inf are no data), a reading from a value and a sample count."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from rollout.gates import Reading
from rollout.playbook.model import MetricGate
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
        self.name = name
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers, transport=transport)

    def close(self) -> None:
        self._http.close()


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
    return number if number == number and abs(number) != float("inf") else None  # NaN and Inf: no data


def reading(value: float | None, samples: float | None, window: float) -> Reading:
    """A reading from a value and a sample count; without a sample query, a value counts as one."""
    count = round(samples) if samples is not None else (1 if value is not None else 0)
    return Reading(value, max(count, 0), window)
