"""Preflight: every gate query of a phase run once, before anything is written.

For each metric of each gate set the phase's ramp and gate steps use: the query answers; each
query (each cohort's, for a compare metric) returns a series; treatment and control are not the
same series; and, for a ramp, the samples can reach ``min_samples`` within the hold at the traffic
seen now (the cohort at the first percentage; for a compare metric also the control at the last
percentage below 100). A metric whose traffic cannot be estimated now is noted, not failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rollout.engine.context import RunContext
from rollout.gates import Reading
from rollout.playbook.builtin import EMBEDDED
from rollout.playbook.model import CohortLabels, GateSet, GateStep, MetricGate, Phase, RampStep
from rollout.providers.base import placeholders
from rollout.providers.prometheus import PrometheusMetrics
from rollout.util.errors import MeasurementError
from rollout.util.units import format_duration


@dataclass(frozen=True)
class PreflightCheck:
    """One metric's preflight: what was asked, and what is wrong (``problem``) or worth saying (``note``)."""

    gate: str
    metric: str
    asked: str
    problem: str | None = None
    note: str | None = None


@dataclass
class PreflightReport:
    checks: list[PreflightCheck] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"gate {c.gate}: {c.metric}: {c.problem}" for c in self.checks if c.problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def gated_steps(phase: Phase) -> dict[str, RampStep | GateStep]:
    """Each gate set the phase judges, with the step that uses it (a ramp before a gate step)."""
    found: dict[str, RampStep | GateStep] = {}
    for step in phase.steps:
        if isinstance(step, (RampStep, GateStep)) and not isinstance(found.get(step.gate), RampStep):
            found[step.gate] = step
    return found


def run_preflight(ctx: RunContext) -> PreflightReport:
    """Run every gate query of ``ctx.phase`` once at the run's clock; see the module docstring."""
    report = PreflightReport()
    now = ctx.clock.time()
    for gate_name, step in gated_steps(ctx.phase).items():
        gates = ctx.playbook.gates[gate_name]
        for spec in gates.metrics:
            try:
                report.checks.append(_check(ctx, gate_name, gates, spec, step, now))
            except Exception as exc:  # noqa: BLE001 - a preflight says what failed, it never crashes
                text = str(exc) if isinstance(exc, MeasurementError) else f"{type(exc).__name__}: {exc}"
                asked = _asked(spec)
                report.checks.append(PreflightCheck(gate_name, spec.metric, asked, problem=f"{asked} failed: {text}"))
    return report


def _asked(spec: MetricGate) -> str:
    if spec.kind == "alert":
        return f"alert {spec.alertname}"
    if isinstance(spec.query, str):
        return f"query {spec.query!r}"
    if spec.query is not None:
        return f"GET {spec.query.url}"
    return f"{spec.metric} from the embedded service"


def _check(
    ctx: RunContext, gate_name: str, gates: GateSet, spec: MetricGate, step: RampStep | GateStep, now: float
) -> PreflightCheck:
    window = spec.window or gates.window
    provider = ctx.metrics.providers[spec.provider]
    percent = step.percentages[0] if isinstance(step, RampStep) else None
    reading = provider.measure(spec, window, now, percent)
    asked = _asked(spec)
    if reading.error:
        return PreflightCheck(gate_name, spec.metric, asked, problem=f"{asked} failed: {reading.error}")
    if spec.kind == "alert":
        firing = reading.value or 0
        problem = f"alert {spec.alertname} is firing now: the ramp would fail at once" if firing else None
        return PreflightCheck(gate_name, spec.metric, asked, problem=problem)
    if isinstance(provider, PrometheusMetrics):
        problem = _series_problem(provider, spec, window, now, percent)
        if problem:
            return PreflightCheck(gate_name, spec.metric, asked, problem=problem)
    if spec.kind == "compare" and reading.cohorts is not None and spec.provider != EMBEDDED:
        (treated, control) = reading.cohorts
        if treated.samples and (treated.samples, treated.value) == (control.samples, control.value):
            labels = spec.cohorts or CohortLabels()
            return PreflightCheck(
                gate_name,
                spec.metric,
                asked,
                problem=f"treatment ({labels.treatment}) and control ({labels.control}) read the same series "
                f"({treated.samples} samples each, the same value): $cohort does not select a label the series have",
            )
    if not isinstance(step, RampStep):
        return PreflightCheck(gate_name, spec.metric, asked)
    traffic = _traffic(ctx, spec, reading, window)
    return _reachable(gate_name, gates, spec, step, window, asked, traffic)


def _series_problem(
    provider: PrometheusMetrics, spec: MetricGate, window: float, now: float, percent: int | None
) -> str | None:
    """A PromQL query (each cohort's, for a compare metric) that returns no series, named."""
    labels = spec.cohorts or CohortLabels()
    cohorts: tuple[str | None, ...] = (labels.treatment, labels.control) if spec.kind == "compare" else (None,)
    for text in (spec.query, spec.samples):
        if not isinstance(text, str):
            continue
        for cohort in cohorts:
            promql = placeholders(text if cohort is None else text.replace("$cohort", cohort), window, percent, True)
            if not provider.vector(promql, now):
                who = "" if cohort is None else f" for the {cohort} cohort"
                return f"query {promql!r}{who} returned no series: check the metric's name and labels"
    return None


def _traffic(ctx: RunContext, spec: MetricGate, reading: Reading, window: float) -> float | None:
    """Events per second the metric's whole population sees now (None: cannot be told now)."""
    if spec.provider == EMBEDDED:
        counts = getattr(ctx.metrics.providers[EMBEDDED], "cohort_counts", None)
        if counts is not None:
            inside, outside = counts(window)
            return (inside + outside) / window
        return None
    if reading.cohorts is not None:
        return sum(c.samples for c in reading.cohorts) / window
    counted = spec.samples or getattr(spec.query, "samples", None)
    return reading.samples / window if counted else None


def _reachable(
    gate_name: str,
    gates: GateSet,
    spec: MetricGate,
    step: RampStep,
    window: float,
    asked: str,
    traffic: float | None,
) -> PreflightCheck:
    needed = gates.min_samples if spec.min_samples is None else spec.min_samples
    span = min(window, step.hold)
    shares: list[Any] = [(p, p / 100) for p in step.percentages if p < 100]
    if spec.kind == "compare":
        shares += [(p, (100 - p) / 100) for p in step.percentages if p < 100]
    if not shares or needed <= 1:
        return PreflightCheck(gate_name, spec.metric, asked)
    at, share = min(shares, key=lambda s: s[1])
    if not traffic:
        return PreflightCheck(
            gate_name,
            spec.metric,
            asked,
            note=f"no traffic counted now (0 samples in {format_duration(window)}): whether it can reach "
            f"min_samples {needed} within the hold cannot be told yet",
        )
    expected = traffic * share * span
    if expected >= needed:
        return PreflightCheck(
            gate_name, spec.metric, asked, note=f"about {expected:.0f} samples per {format_duration(span)} at {at}%"
        )
    return PreflightCheck(
        gate_name,
        spec.metric,
        asked,
        problem=f"at the traffic now ({traffic:.3g}/s) the smallest cohort ({share * 100:g}% at {at}%) gets about "
        f"{expected:.0f} samples in {format_duration(span)}; min_samples is {needed}, so the step would only hold: "
        "lower min_samples, lengthen the hold or the window, or start at a higher percentage",
    )
