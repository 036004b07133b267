"""What a forecast is given and assumes: the latency model, a breach, what is known of the service,
traffic as it arrives (evenly), and the breaches and spreads assumed when nobody says."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from itertools import pairwise

from rollout.playbook.model import MetricGate

#: a compare rate's control rate when nobody says (the booking flow's own error rate, roughly)
DEFAULT_CONTROL_RATE = 0.01


@dataclass(frozen=True)
class LatencyModel:
    """How one cohort's latencies (ms) are spread: lognormal around ``median`` with log-sd ``sigma``;
    ``tail_share`` of calls ``tail_factor`` times slower (a heavy tail)."""

    median: float
    sigma: float = 0.5
    tail_share: float = 0.0
    tail_factor: float = 1.0

    @classmethod
    def from_moments(cls, mean: float, sd: float) -> LatencyModel:
        """The lognormal with this mean and standard deviation (no extra tail)."""
        mean = max(mean, 1e-9)
        sigma2 = math.log(1.0 + (sd / mean) ** 2) if sd > 0 else 0.0
        return cls(mean / math.exp(sigma2 / 2), math.sqrt(sigma2))

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2) * (1 + self.tail_share * (self.tail_factor - 1))

    @property
    def sd(self) -> float:
        second = self.median**2 * math.exp(2 * self.sigma**2) * (1 + self.tail_share * (self.tail_factor**2 - 1))
        return math.sqrt(max(second - self.mean**2, 0.0))

    def scaled(self, mean: float) -> LatencyModel:
        """The same shape with this mean."""
        factor = mean / self.mean if self.mean > 0 else 1.0
        return LatencyModel(self.median * factor, self.sigma, self.tail_share, self.tail_factor)

    def draw(self, rng: random.Random) -> float:
        value = self.median * rng.lognormvariate(0.0, self.sigma)
        return value * self.tail_factor if self.tail_share and rng.random() < self.tail_share else value

    def describe(self) -> str:
        tail = f", {self.tail_share * 100:g}% of calls {self.tail_factor:g}x slower" if self.tail_share else ""
        return f"lognormal, median {self.median:.4g} ms, log-sd {self.sigma:.2g}{tail} (mean {self.mean:.4g} ms)"


@dataclass(frozen=True)
class Breach:
    """A true value to forecast the catch of: ``value`` is a rate (0-1), a mean latency in ms, or a
    compare metric's difference (treatment minus control)."""

    metric: str
    value: float
    label: str = "named"


@dataclass(frozen=True)
class Assumptions:
    """What the forecast cannot read from the playbook: each latency metric's spread (the control
    cohort's for a compare metric) and each compare rate's control rate. Missing ones are assumed and
    said in :attr:`assumed`."""

    latency: dict[str, LatencyModel] = field(default_factory=dict)
    control_rate: dict[str, float] = field(default_factory=dict)


def arrivals(rate: float, interval: float, chunks: int) -> list[int]:
    """Samples arriving in each of ``chunks`` intervals when ``rate`` per second arrive evenly (the
    running total rounded down, so 0.5/s gives one sample every other second)."""
    total = [math.floor(rate * interval * j + 1e-9) for j in range(chunks + 1)]
    return [b - a for a, b in pairwise(total)]


def covered(t: float, window: float, interval: float) -> int:
    """How many of the newest intervals the window at ``t`` covers (never before the step began)."""
    return int(min(t, window) / interval + 1e-9) or 1


def samples_in_window(rate: float, t: float, window: float, interval: float) -> int:
    """Samples in the window at evaluation time ``t`` when ``rate`` per second arrive evenly."""
    j = round(t / interval)
    c = covered(t, window, interval) if t > 0 else 0
    return math.floor(rate * interval * j + 1e-9) - math.floor(rate * interval * (j - c) + 1e-9)


def assumed_latency(spec: MetricGate) -> LatencyModel:
    """The spread assumed for a latency metric nobody described: a lognormal whose standard
    deviation equals its mean (for a compare metric: a mean and a spread the size of the alert)."""
    scale = abs(spec.alert) if spec.kind == "compare" else max(abs(spec.target), 1.0)
    return LatencyModel.from_moments(max(scale, 1.0), max(scale, 1.0))


def twice_the_alert(spec: MetricGate) -> float | None:
    """A breach of twice the alert, in the metric's own terms: an error rate of 2 x 5 % = 10 %; a
    success rate whose failures are twice the alert's (90 % -> 80 %); a mean of 2 x 5 s; a difference
    of 2 x the alert margin. None when that is no breach (an alert at or below 0 for a difference)."""
    if spec.kind == "compare":
        return 2 * spec.alert if spec.alert > 0 else None
    if spec.unit == "rate" and spec.higher:
        return max(0.0, 1.0 - 2 * (1.0 - spec.alert))
    if spec.unit == "rate":
        return min(1.0, 2 * spec.alert)
    return 2 * spec.alert if spec.alert > 0 else None


def parse_traffic(text: str) -> float:
    """Events per second from ``50/s``, ``3000/m``, ``120000/h``, ``50``; a ValueError otherwise."""
    value = text.strip().lower().replace(" ", "")
    scale = 1.0
    for suffix, size in (("/s", 1.0), ("/sec", 1.0), ("/m", 60.0), ("/min", 60.0), ("/h", 3600.0)):
        if value.endswith(suffix):
            value, scale = value[: -len(suffix)], size
            break
    try:
        rate = float(value) / scale
    except ValueError:
        raise ValueError(f"expected a rate like 50/s, 3000/m or 120000/h, got {text!r}") from None
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"the traffic must be a positive rate, got {text!r}")
    return rate
