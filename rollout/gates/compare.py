"""Treatment against control: the ``compare`` gate.

The embedded service labels every booking request and every confirmation with its cohort
(``treatment``: the flag is on and the customer is in the rollout; ``control``: everyone else) and
reports, per cohort, counts, error counts and the mean and standard deviation of latencies. A
``compare`` metric judges the difference *treatment minus control*, so a slowdown for everyone
(both cohorts) does not fail it and a slowdown of the feature's customers does.

The difference's interval holds at every look, like the rate gates' (:mod:`rollout.gates`): it is
the difference of one always-valid interval per cohort, each at half the error budget (a union
bound), so a ramp that looks every few seconds still fails a healthy step with probability at most
``1 - confidence``:

* rates (``booking_error_rate``): the beta-binomial confidence sequence of each proportion;
* means (``booking_latency_ms``, ``confirmation_delay_ms``): Robbins' normal-mixture boundary with
  the observed standard deviation, the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha,
  Kennedy and Ramdas (2021). Latencies are skewed; it is asymptotic, which is why a cohort needs
  ``min_samples`` before it is judged.

A fail needs the whole interval above the alert margin; a pass needs the point estimate below the
target margin with ``min_samples`` in each cohort. At 0 % or 100 % there is no one to compare with:
the metric says so and does not hold the step (it was judged at every step in between).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from rollout.gates.results import PASS, MetricResult, Reading
from rollout.playbook.builtin import vocabulary
from rollout.playbook.model import GateSet, MetricGate
from rollout.playbook.plugins import JudgePlugin
from rollout.stats import Cohort, difference_interval
from rollout.util.units import format_duration

if TYPE_CHECKING:
    from rollout.gates.verdict import StepCounts


def _ms(value: float, sign: str = "") -> str:
    # a booking request takes well under a millisecond here: whole milliseconds would show 0 ms
    return f"{value:{sign}.1f} ms" if abs(value) < 10 else f"{value:{sign}.0f} ms"


def signed(value: float, unit: str) -> str:
    """A difference as people read it: ``+1.20%``, ``-3.5 ms``, ``+1202 ms``."""
    return f"{value * 100:+.2f}%" if unit == "rate" else _ms(value, "+")


def plain(value: float | None, unit: str) -> str:
    """A cohort's value as people read it."""
    if value is None:
        return "no data"
    return f"{value * 100:.2f}%" if unit == "rate" else _ms(value)


def judge_difference(
    metric: str,
    target: float,
    alert: float,
    treatment: Cohort,
    control: Cohort,
    min_samples: int,
    window: float,
    confidence: float,
    pass_when: str = "estimate",
    unit: str | None = None,
) -> tuple[str, float | None, tuple[float, float] | None, str]:
    """(verdict, difference, interval, reason) for one compare metric (``unit``: rate or latency,
    by default the built-in metric's); with ``pass_when="interval"`` a pass needs the whole interval
    below the target."""
    unit = unit or vocabulary().compare_metrics[metric]["unit"]
    counts = f"treatment {treatment.samples} / control {control.samples} samples"
    both = f"treatment {plain(treatment.value, unit)} vs control {plain(control.value, unit)}"
    if treatment.value is None or control.value is None:
        return (
            "hold",
            None,
            None,
            (
                f"{metric} (treatment vs control) has no data ({counts} in "
                f"{format_duration(window)}); no data is never a pass"
            ),
        )
    difference = treatment.value - control.value
    if min(treatment.samples, control.samples) < min_samples:
        return (
            "hold",
            difference,
            None,
            (f"{metric}: {both} from {counts}, fewer than the {min_samples} needed in each"),
        )
    low, high = difference_interval(unit, treatment, control, confidence)
    ci = f"{confidence * 100:g}% always-valid interval of the difference {signed(low, unit)}..{signed(high, unit)}"
    shown = f"{metric}: {both}, difference {signed(difference, unit)}"
    if low > alert:
        return (
            "fail",
            difference,
            (low, high),
            (
                f"{shown} > alert {signed(alert, unit)}: treatment is worse than "
                f"control ({counts}, {format_duration(window)}, {ci})"
            ),
        )
    if difference > alert:
        return (
            "hold",
            difference,
            (low, high),
            f"{shown} > alert {signed(alert, unit)} but not yet clear ({counts}, {ci})",
        )
    if difference < target and pass_when == "interval" and confidence > 0 and high >= target:
        return (
            "hold",
            difference,
            (low, high),
            (f"{shown} < target {signed(target, unit)} but not yet sure ({counts}, {ci})"),
        )
    if difference < target:
        return (
            "pass",
            difference,
            (low, high),
            (f"{shown} < target {signed(target, unit)} ({counts}, {format_duration(window)})"),
        )
    return (
        "hold",
        difference,
        (low, high),
        (f"{shown} between target {signed(target, unit)} and alert {signed(alert, unit)} ({counts})"),
    )


def compare_base(spec: MetricGate, reading: Reading, min_samples: int) -> dict[str, Any]:
    """The fields every compare result shares (the mean's judge and the rank judge)."""
    return dict(
        metric=spec.metric,
        compare=True,
        target=spec.target,
        alert=spec.alert,
        min_samples=min_samples,
        window_seconds=reading.window,
        unit=spec.unit,
        provider=spec.provider,
    )


def not_compared(base: dict[str, Any], reading: Reading, name: str) -> MetricResult | None:
    """At 0 % or 100 % there is nobody to compare with: a pass that says so (None otherwise)."""
    if reading.percent not in (0, 100):
        return None
    missing = "no control group at 100%" if reading.percent == 100 else "no treatment group (flag off or 0%)"
    return MetricResult(**base, verdict=PASS, value=None, samples=0, reason=f"{name}: not compared, {missing}")


def judge_compare(
    spec: MetricGate, reading: Reading, min_samples: int, confidence: float, pass_when: str = "estimate"
) -> MetricResult:
    """Treatment against control (see :func:`rollout.stats.difference_interval`). At 0 % or 100 % there is nobody to
    compare with: the metric says so and does not hold the step."""
    assert reading.cohorts is not None
    treatment, control = reading.cohorts
    base = compare_base(spec, reading, min_samples)
    skipped = not_compared(base, reading, f"{spec.metric} (treatment vs control)")
    if skipped is not None:
        return skipped
    verdict, difference, interval, reason = judge_difference(
        spec.metric,
        spec.target,
        spec.alert,
        treatment,
        control,
        min_samples,
        reading.window,
        confidence,
        pass_when,
        spec.unit,
    )
    return MetricResult(
        **base,
        verdict=verdict,
        value=difference,
        samples=min(treatment.samples, control.samples),
        interval=interval,
        reason=reason,
        treatment=treatment.value,
        control=control.value,
    )


class MeanJudgeKeys(BaseModel):
    """``judge: mean`` (the default): each cohort's aggregate (a rate's counts, a latency's mean and
    deviation), their difference's always-valid interval against the margins."""

    model_config = ConfigDict(extra="forbid")
    judge: Literal["mean"] = "mean"


class MeanJudge(JudgePlugin):
    """The ``mean`` compare judge, as a plugin."""

    name = "mean"
    config = MeanJudgeKeys

    @staticmethod
    def judge(
        spec: MetricGate, reading: Reading, min_samples: int, confidence: float, gates: GateSet, counts: StepCounts
    ) -> MetricResult:
        return judge_compare(spec, reading, min_samples, confidence, gates.pass_when)
