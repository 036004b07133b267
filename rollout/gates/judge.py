"""Gates judge; they never measure.

:func:`evaluate` is a pure function from a gate set and one metrics answer to a :class:`Verdict`.
Per metric: **fail** when it has enough samples and is beyond its alert threshold; **hold** when it
sits between target and alert, has too few samples, or has no value (no data is never a pass);
**pass** when it is beyond its target. The verdict is the worst of its metrics, and every metric
reports its value, its thresholds and its sample count.

For rates (``success_rate``, ``error_rate``) a fail must also be *clear*: the rate's interval at
the gate's confidence must lie wholly beyond the alert threshold. The interval is an always-valid
confidence sequence (a beta-binomial mixture martingale): a ramp looks at its growing sample every
interval, and however many looks it takes, a healthy step is rolled back with probability at most
``1 - confidence``. A fixed-sample Wilson interval, checked again and again, gives no such bound
(``test: wilson`` keeps it). One error in the first ten calls is a 10 % error rate but says
little; it holds. A real breach is clear at once (ten failures in ten calls: the interval starts
at 50 %).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from rollout.gates.compare import cohort_of, judge_difference
from rollout.playbook.builtin import MEANS, PERCENTILES, SAMPLES_OF
from rollout.playbook.model import GateSet, MetricGate
from rollout.stats import Cohort, chi_square_p, confidence_sequence, mean_margin, wilson
from rollout.util.units import format_duration

PASS, HOLD, FAIL = "pass", "hold", "fail"
_RANK = {PASS: 0, HOLD: 1, FAIL: 2}


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    verdict: str
    metrics: tuple[MetricResult, ...]
    error: str | None = None

    @property
    def summary(self) -> str:
        """One line: the verdict and the metrics that decided it."""
        if self.error:
            return f"{self.verdict}: {self.error}"
        deciding = [m for m in self.metrics if m.verdict == self.verdict] or list(self.metrics)
        return f"{self.verdict}: " + "; ".join(m.reason for m in deciding)

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
        return f"{value:.0f} ms"
    return f"{value:g}"


def judge(spec: MetricGate, value: float | None, samples: int, min_samples: int, window: float,
          confidence: float = 0.0, test: str = "sequential", sd: float | None = None,
          above: int | None = None, pass_when: str = "estimate") -> MetricResult:
    """The verdict of one metric. A rate fails only when its interval at ``confidence`` lies wholly
    beyond the alert: the always-valid confidence sequence (``test="sequential"``, the default),
    or the fixed-sample Wilson interval (``test="wilson"``, rollout before 0.2). With the
    sequential test a mean latency with its standard deviation ``sd`` fails only when its
    always-valid interval lies above the alert, and a 95th percentile with ``above`` (its samples
    slower than the alert) only when more than 5 % of samples are surely slower."""
    higher = spec.higher
    better, worse = (">", "<") if higher else ("<", ">")
    name, unit = spec.metric, spec.unit
    shown = fmt(name, value, unit)
    target, alert = fmt(name, spec.target, unit), fmt(name, spec.alert, unit)
    interval: tuple[float, float] | None = None
    beyond_alert = value is not None and (value < spec.alert if higher else value > spec.alert)
    evidence = ""
    clear_latency: bool | None = None
    # the interval decides only beyond the alert (and is shown only there): computed only then
    if value is not None and beyond_alert and samples > 0 and confidence > 0 and unit == "rate":
        rate = min(max(value, 0.0), 1.0)
        interval = confidence_sequence(rate, samples, confidence) if test == "sequential" \
            else wilson(rate, samples, confidence)
    elif value is not None and beyond_alert and confidence > 0 and test == "sequential" and unit == "latency" \
            and not higher:
        if sd is not None and samples > 1:
            margin = mean_margin(samples, sd, 1.0 - confidence)
            interval = (value - margin, value + margin)
            clear_latency = interval[0] > spec.alert
        elif above is not None and samples > 0:
            low, high = confidence_sequence(above / samples, samples, confidence)
            share = 1.0 - PERCENTILES[name] / 100.0
            clear_latency = low > share
            evidence = (f", {confidence * 100:g}% always-valid interval {low * 100:.1f}%-{high * 100:.1f}% of "
                        f"calls slower than {alert}")
    base: dict[str, Any] = dict(metric=name, value=value, target=spec.target, alert=spec.alert, samples=samples,
                min_samples=min_samples, window_seconds=window, interval=interval, unit=unit, provider=spec.provider)
    if value is None:
        return MetricResult(**base, verdict=HOLD,
                            reason=f"{name} has no data ({samples} samples in {format_duration(window)}); no data is never a pass")
    meets_target = value > spec.target if higher else value < spec.target
    if samples < min_samples:
        return MetricResult(**base, verdict=HOLD,
                            reason=f"{name} {shown} from {samples} samples, fewer than the {min_samples} needed")
    kind = "always-valid interval" if test == "sequential" else "interval"
    ci = f", {confidence * 100:g}% {kind} {fmt(name, interval[0], unit)}-{fmt(name, interval[1], unit)}" \
        if interval else evidence
    if beyond_alert:
        clear = interval is None or (interval[1] < spec.alert if higher else interval[0] > spec.alert)
        if clear_latency is not None:
            clear = clear_latency
        if clear:
            return MetricResult(**base, verdict=FAIL,
                                reason=f"{name} {shown} {worse} alert {alert} ({samples} samples, {format_duration(window)}{ci})")
        return MetricResult(**base, verdict=HOLD,
                            reason=f"{name} {shown} {worse} alert {alert} but not yet clear ({samples} samples{ci})")
    if meets_target:
        sure = _sure_beyond_target(spec, value, samples, confidence, sd) if pass_when == "interval" else None
        if sure is not None and not sure[0]:
            low, high = sure[1]
            return MetricResult(**{**base, "interval": sure[1]}, verdict=HOLD,
                                reason=f"{name} {shown} {better} target {target} but not yet sure ({samples} samples, "
                                f"{confidence * 100:g}% always-valid interval {fmt(name, low, unit)}-{fmt(name, high, unit)})")
        return MetricResult(**base, verdict=PASS,
                            reason=f"{name} {shown} {better} target {target} ({samples} samples, {format_duration(window)})")
    return MetricResult(**base, verdict=HOLD,
                        reason=f"{name} {shown} between target {target} and alert {alert} ({samples} samples)")


def _sure_beyond_target(spec: MetricGate, value: float, samples: int, confidence: float,
                        sd: float | None) -> tuple[bool, tuple[float, float]] | None:
    """With ``pass_when: interval``: is the always-valid interval wholly beyond the target (and the
    interval)? None where there is no interval to go on (counts, gauges, a latency without its spread)."""
    if confidence <= 0 or samples <= 0:
        return None
    if spec.unit == "rate":
        interval = confidence_sequence(min(max(value, 0.0), 1.0), samples, confidence)
    elif spec.unit == "latency" and sd is not None and samples > 1:
        margin = mean_margin(samples, sd, 1.0 - confidence)
        interval = (value - margin, value + margin)
    else:
        return None
    return (interval[0] > spec.target if spec.higher else interval[1] < spec.target), interval


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


def embedded_reading(spec: MetricGate, answer: dict[str, Any], window: float) -> Reading:
    """One metric's reading from the embedded service's metrics answer over ``window``."""
    measured = float(answer.get("window_seconds", window))
    if spec.kind == "compare":
        cohorts = answer.get("cohorts") or {}
        treatment, control = (cohort_of(spec.metric, cohorts.get(c)) for c in ("treatment", "control"))
        # only a service that says its flag is off (or at 0 or 100 %) has nobody to compare: a missing
        # answer is no data, never a pass
        percent = 0 if answer.get("flag_enabled") is False else answer.get("rollout_percent")
        return Reading(None, min(treatment.samples, control.samples), measured, cohorts=(treatment, control),
                       percent=percent if isinstance(percent, int) else None)
    value = answer.get(spec.metric)
    sd = answer.get("latency_sd_ms") if spec.metric in MEANS else None
    above = answer.get("latency_above") or {}
    count = above.get("count") if spec.metric in PERCENTILES and above.get("threshold_ms") == spec.alert else None
    return Reading(None if value is None else float(value), int(answer.get(SAMPLES_OF[spec.metric]) or 0), measured,
                   sd=None if sd is None else float(sd), above=None if count is None else int(count))


def judge_compare(spec: MetricGate, reading: Reading, min_samples: int, confidence: float,
                  pass_when: str = "estimate") -> MetricResult:
    """Treatment against control (see :mod:`rollout.compare`). At 0 % or 100 % there is nobody to
    compare with: the metric says so and does not hold the step."""
    assert reading.cohorts is not None
    treatment, control = reading.cohorts
    base: dict[str, Any] = dict(metric=spec.metric, target=spec.target, alert=spec.alert, min_samples=min_samples,
                window_seconds=reading.window, unit=spec.unit, provider=spec.provider)
    if reading.percent in (0, 100):
        missing = "no control group at 100%" if reading.percent == 100 else "no treatment group (flag off or 0%)"
        return MetricResult(**base, verdict=PASS, value=None, samples=0,
                            reason=f"{spec.metric} (treatment vs control): not compared, {missing}")
    verdict, difference, interval, reason = judge_difference(
        spec.metric, spec.target, spec.alert, treatment, control, min_samples, reading.window, confidence, pass_when,
        spec.unit)
    return MetricResult(**base, verdict=verdict, value=difference, samples=min(treatment.samples, control.samples),
                        interval=interval, reason=reason)


def judge_readings(gates: GateSet, readings: list[Reading]) -> Verdict:
    """Judge every metric of ``gates`` from one :class:`Reading` each (in the gates' order). A
    reading that failed is a hold naming the error; when all failed, the verdict says so."""
    results = []
    for spec, reading in zip(gates.metrics, readings, strict=True):
        min_samples = gates.min_samples if spec.min_samples is None else spec.min_samples
        if reading.error is not None:
            results.append(MetricResult(spec.metric, HOLD, None, spec.target, spec.alert, 0, min_samples,
                                        reading.window, f"{spec.metric}: no data ({reading.error})",
                                        unit=spec.unit, provider=spec.provider))
            continue
        try:
            if spec.kind == "compare":
                results.append(judge_compare(spec, reading, min_samples, gates.confidence, gates.pass_when))
            else:
                results.append(judge(spec, reading.value, reading.samples, min_samples, reading.window,
                                     gates.confidence, gates.test, sd=reading.sd, above=reading.above,
                                     pass_when=gates.pass_when))
        except (ArithmeticError, ValueError, TypeError) as exc:
            # a value the statistics cannot take (1e308 overflows an interval): no verdict, never a crash
            results.append(MetricResult(spec.metric, HOLD, None, spec.target, spec.alert, reading.samples,
                                        min_samples, reading.window,
                                        f"{spec.metric}: {reading.value!r} from {reading.samples} samples could not be "
                                        f"judged ({type(exc).__name__}: {exc}); held", unit=spec.unit,
                                        provider=spec.provider))
    worst = max((r.verdict for r in results), key=_RANK.__getitem__)
    errors = sorted({r.error for r in readings if r.error})
    all_failed = bool(readings) and all(r.error for r in readings)
    return Verdict(worst, tuple(results), error=f"metrics unavailable: {'; '.join(errors)}" if all_failed else None)


def windows_needed(gates: GateSet) -> list[float]:
    """The distinct windows the gate set reads."""
    return sorted({spec.window or gates.window for spec in gates.metrics})


def no_data(gates: GateSet, error: str) -> Verdict:
    """A hold for every metric because the measurement itself failed."""
    results = tuple(
        MetricResult(spec.metric, HOLD, None, spec.target, spec.alert, 0,
                     gates.min_samples if spec.min_samples is None else spec.min_samples,
                     spec.window or gates.window, f"{spec.metric}: no data ({error})", unit=spec.unit,
                     provider=spec.provider)
        for spec in gates.metrics
    )
    return Verdict(HOLD, results, error=f"metrics unavailable: {error}")


#: the sample-ratio check: fewer decided bookings than this say nothing; below this p-value, bucketing is broken
SRM_MIN_COUNT, SRM_ALPHA = 100, 0.001


def sample_ratio(in_cohort: int, out_of_cohort: int, percent: int, window: float) -> MetricResult | None:
    """Did the service put ``percent`` % of the decided bookings in the cohort? A chi-square
    goodness-of-fit test (one degree of freedom); None below :data:`SRM_MIN_COUNT` bookings.

    A mismatch fails the step with a message that blames the bucketing, not the feature: the
    cohort the gates judged is not the cohort the ramp asked for."""
    total = in_cohort + out_of_cohort
    if total < SRM_MIN_COUNT or not 0 < percent < 100:
        return None
    p_value = chi_square_p(in_cohort, total, percent / 100.0)
    share = in_cohort / total
    base: dict[str, Any] = dict(metric="sample_ratio", value=share, target=percent / 100.0, alert=percent / 100.0, samples=total,
                min_samples=SRM_MIN_COUNT, window_seconds=window, unit="rate")
    seen = f"{in_cohort} of {total} decided bookings ({share * 100:.1f}%) went to the cohort at {percent}%"
    if p_value < SRM_ALPHA:
        return MetricResult(**base, verdict=FAIL, reason=(
            f"sample ratio mismatch: {seen} (chi-square p = {p_value:.1e} < {SRM_ALPHA:g}): bucketing is broken, "
            "not the feature; check the group id and the percentage the service reads"))
    return MetricResult(**base, verdict=PASS, reason=f"sample ratio: {seen} (chi-square p = {p_value:.2f})")


def with_check(verdict: Verdict, check: MetricResult | None) -> Verdict:
    """``verdict`` with one more result (the sample-ratio check), the worst deciding."""
    if check is None:
        return verdict
    worst = max((verdict.verdict, check.verdict), key=_RANK.__getitem__)
    return Verdict(worst, (*verdict.metrics, check), verdict.error)
