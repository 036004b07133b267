"""What a judgement is made of: a provider's :class:`Reading`, one metric's :class:`MetricResult`,
a gate set's :class:`Verdict`, and how a value is shown to people."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from rollout.stats import Cohort

PASS, HOLD, FAIL = "pass", "hold", "fail"

_RANK = {PASS: 0, HOLD: 1, FAIL: 2}


def worst(verdicts: Iterable[str]) -> str:
    """The worst of ``verdicts``: a fail over a hold over a pass."""
    return max(verdicts, key=_RANK.__getitem__)


@dataclass(frozen=True)
class MetricResult:
    metric: str
    verdict: str
    value: float | None
    target: float
    alert: float
    samples: int
    min_samples: int
    window_seconds: float
    reason: str
    interval: tuple[float, float] | None = None
    #: rate, latency, count or gauge: how the value is shown
    unit: str = ""
    #: where the value came from (``embedded``, or a provider's name)
    provider: str = "embedded"
    #: guardrail (decides, turns the flag off), signal (stops the step for a person) or shadow (never decides)
    role: str = "guardrail"
    #: failing evaluations of this metric so far in the step (its ``failure_limit`` says how many it may have)
    failures: int = 0
    #: this evaluation's reading failed (the provider could not be asked), and how many in a row have
    errored: bool = False
    errors_in_a_row: int = 0
    #: a rank judge's looks spent in the step (each spends its share of the error; see gates.rank)
    looks: int = 0
    #: the health action a trigger took on this result (``on_guardrail``, ``on_srm``, ``on_no_traffic``):
    #: ``rollback``, ``hold`` (the result holds, its reason says why) or ``warn`` (shown and notified,
    #: never deciding); None: no trigger, or the default action
    action: str | None = None

    #: judged treatment against control (``value`` is their difference), and the two cohorts' values
    compare: bool = False
    treatment: float | None = None
    control: float | None = None

    @property
    def decides(self) -> bool:
        """Does this result take part in the verdict? (A shadow never does; a warned failure neither.)"""
        return self.role != "shadow" and not (self.action == "warn" and self.verdict == FAIL)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    verdict: str
    metrics: tuple[MetricResult, ...]
    error: str | None = None
    #: why the step must stop for a person now (a signal metric failed, a provider erred past its
    #: ``error_limit``); the flag is not touched for it
    stop: str | None = None
    #: how long the evaluation took, reading and judging (wall time; the engine sets it)
    duration_s: float | None = None
    #: what each metric's judge read, in the gate set's order (kept with the record, for replays)
    readings: tuple[Reading, ...] | None = None

    @property
    def summary(self) -> str:
        """One line: the verdict and the metrics that decided it."""
        if self.stop and self.verdict != FAIL:
            return f"{self.verdict}: stopped for a person: {self.stop}" + (f" ({self.error})" if self.error else "")
        if self.error:
            return f"{self.verdict}: {self.error}"
        deciding = [m for m in self.metrics if m.verdict == self.verdict and m.decides] or list(self.metrics)
        # a shadow never decides, but a failing one is said: it is why it is watched; a warning likewise
        shadows = [m for m in self.metrics if m.role == "shadow" and m.verdict == FAIL and m not in deciding]
        warned = [m for m in self.metrics if m.action == "warn" and m not in deciding and m not in shadows]
        return f"{self.verdict}: " + "; ".join(
            [m.reason for m in deciding]
            + [f"shadow {m.reason}" for m in shadows]
            + [f"warn {m.reason}" for m in warned]
        )

    @property
    def warnings(self) -> tuple[MetricResult, ...]:
        """The results a ``warn`` health action took: recorded, notified and shown, never deciding."""
        return tuple(m for m in self.metrics if m.action == "warn")

    def as_dicts(self) -> list[dict[str, Any]]:
        return [m.as_dict() for m in self.metrics]

    def record(self) -> dict[str, Any]:
        """The verdict as the audit log keeps it with a flag-off."""
        return {"summary": self.summary, "metrics": self.as_dicts()}


def fmt(metric: str, value: float | None, unit: str | None = None) -> str:
    """A metric value as people read it: rates in %, latencies in ms, counts as integers.

    ``unit`` (rate, latency, count, gauge) decides; without it, the name's ending does."""
    if value is None:
        return "no data"
    unit = unit or ("rate" if metric.endswith("_rate") else "latency" if metric.endswith("_ms") else "")
    if unit == "rate":
        return f"{value * 100:.2f}%"
    if unit == "latency":
        return f"{value if round(value) else 0.0:.0f} ms"  # never "-0 ms"
    return f"{value:g}"


@dataclass(frozen=True)
class Alerts:
    """What an alert source says about one named alert now: the label sets of its series that fire,
    that are pending (their condition holds, not yet for the rule's ``for:``), and that fire but are
    silenced or inhibited (Alertmanager), and where it was read."""

    source: str
    firing: tuple[dict[str, str], ...] = ()
    pending: tuple[dict[str, str], ...] = ()
    suppressed: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True)
class Reading:
    """What a provider measured for one metric: its value (None: no data), its samples, the
    window it covers, and the error when it could not be measured. A ``compare`` metric carries
    its two cohorts (treatment, control) and the percentage they were split at instead."""

    value: float | None
    samples: int
    window: float
    error: str | None = None
    cohorts: tuple[Cohort, Cohort] | None = None
    percent: int | None = None
    #: a mean's standard deviation; a percentile's count of samples beyond its alert
    sd: float | None = None
    above: int | None = None
    #: a rank judge's samples, (treatment, control)
    cohort_samples: tuple[list[float], list[float]] | None = None
    #: an alert metric's answer
    alerts: Alerts | None = None
