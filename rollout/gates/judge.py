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

from typing import Any

from rollout.gates.results import FAIL, HOLD, PASS, MetricResult, fmt
from rollout.playbook.model import MetricGate
from rollout.stats import confidence_sequence, mean_margin, wilson
from rollout.util.units import format_duration


def judge(
    spec: MetricGate,
    value: float | None,
    samples: int,
    min_samples: int,
    window: float,
    confidence: float = 0.0,
    test: str = "sequential",
    sd: float | None = None,
    above: int | None = None,
    pass_when: str = "estimate",
) -> MetricResult:
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
        interval = (
            confidence_sequence(rate, samples, confidence)
            if test == "sequential"
            else wilson(rate, samples, confidence)
        )
    elif (
        value is not None
        and beyond_alert
        and confidence > 0
        and test == "sequential"
        and unit == "latency"
        and not higher
    ):
        if sd is not None and samples > 1:
            margin = mean_margin(samples, sd, 1.0 - confidence)
            interval = (value - margin, value + margin)
            clear_latency = interval[0] > spec.alert
        elif above is not None and samples > 0 and spec.percentile is not None:
            low, high = confidence_sequence(above / samples, samples, confidence)
            share = 1.0 - spec.percentile / 100.0
            clear_latency = low > share
            evidence = (
                f", {confidence * 100:g}% always-valid interval {low * 100:.1f}%-{high * 100:.1f}% of "
                f"calls slower than {alert}"
            )
    base: dict[str, Any] = dict(
        metric=name,
        value=value,
        target=spec.target,
        alert=spec.alert,
        samples=samples,
        min_samples=min_samples,
        window_seconds=window,
        interval=interval,
        unit=unit,
        provider=spec.provider,
    )
    if value is None:
        return MetricResult(
            **base,
            verdict=HOLD,
            reason=f"{name} has no data ({samples} samples in {format_duration(window)}); no data is never a pass",
        )
    meets_target = value > spec.target if higher else value < spec.target
    if samples < min_samples:
        return MetricResult(
            **base, verdict=HOLD, reason=f"{name} {shown} from {samples} samples, fewer than the {min_samples} needed"
        )
    kind = "always-valid interval" if test == "sequential" else "interval"
    ci = (
        f", {confidence * 100:g}% {kind} {fmt(name, interval[0], unit)}-{fmt(name, interval[1], unit)}"
        if interval
        else evidence
    )
    if beyond_alert:
        clear = interval is None or (interval[1] < spec.alert if higher else interval[0] > spec.alert)
        if clear_latency is not None:
            clear = clear_latency
        if clear:
            return MetricResult(
                **base,
                verdict=FAIL,
                reason=f"{name} {shown} {worse} alert {alert} ({samples} samples, {format_duration(window)}{ci})",
            )
        return MetricResult(
            **base,
            verdict=HOLD,
            reason=f"{name} {shown} {worse} alert {alert} but not yet clear ({samples} samples{ci})",
        )
    if meets_target:
        sure = _sure_beyond_target(spec, value, samples, confidence, sd) if pass_when == "interval" else None
        if sure is not None and not sure[0]:
            low, high = sure[1]
            return MetricResult(
                **{**base, "interval": sure[1]},
                verdict=HOLD,
                reason=f"{name} {shown} {better} target {target} but not yet sure ({samples} samples, "
                f"{confidence * 100:g}% always-valid interval {fmt(name, low, unit)}-{fmt(name, high, unit)})",
            )
        return MetricResult(
            **base,
            verdict=PASS,
            reason=f"{name} {shown} {better} target {target} ({samples} samples, {format_duration(window)})",
        )
    return MetricResult(
        **base, verdict=HOLD, reason=f"{name} {shown} between target {target} and alert {alert} ({samples} samples)"
    )


def _sure_beyond_target(
    spec: MetricGate, value: float, samples: int, confidence: float, sd: float | None
) -> tuple[bool, tuple[float, float]] | None:
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
