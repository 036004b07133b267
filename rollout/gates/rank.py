"""The rank judge for latency, treatment against control (``judge: rank`` on a compare latency).

Kayenta's way: Mann-Whitney on the two cohorts' samples, with the Hodges-Lehmann shift (the median
of every treatment-minus-control difference) as the effect size judged against the margins. Ranks
do not care how far an outlier lies, so one 30 s call moves the verdict no more than one 3 s call;
non-finite samples are dropped and both are said.

A fixed-sample test is not valid when it is looked at again and again, which a ramp does every few
seconds. So its error is spent over fixed looks: look k (k = 0 .. :data:`MAX_LOOKS` - 1) is taken at
the first evaluation where each cohort has ``min_samples * 2**k`` samples, at ``(1 - confidence) /
MAX_LOOKS``; between looks nothing can fail (a pass needs only the estimate within the target). By
the union bound a step with no real slowdown fails with probability at most ``1 - confidence``
however often it is evaluated (``benchmarks/gates_simulation.py --rank`` measures it). A look that
failed keeps the metric failing for the rest of the step.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from rollout.gates.compare import compare_base, not_compared, signed
from rollout.gates.results import FAIL, HOLD, PASS, MetricResult, Reading
from rollout.playbook.model import GateSet, MetricGate
from rollout.playbook.plugins import JudgePlugin
from rollout.stats import hodges_lehmann, mann_whitney_greater
from rollout.util.units import Duration, format_duration

if TYPE_CHECKING:
    from rollout.gates.verdict import StepCounts

#: looks at ``min_samples``, x2, x4, x8, x16 per cohort; each spends a fifth of the error
MAX_LOOKS = 5


def _clean(values: list[float]) -> tuple[list[float], int]:
    finite = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return finite, len(values) - len(finite)


def _outliers(values: list[float]) -> int:
    """Samples beyond the upper fence Q3 + 3 IQR (said, kept: ranks are not moved by how far)."""
    if len(values) < 4:
        return 0
    ordered = sorted(values)
    q1, q3 = ordered[len(ordered) // 4], ordered[(3 * len(ordered)) // 4]
    return sum(1 for v in ordered if v > q3 + 3 * (q3 - q1))


def judge_rank(
    spec: MetricGate,
    reading: Reading,
    min_samples: int,
    confidence: float,
    looks_spent: int = 0,
    failed_before: bool = False,
) -> MetricResult:
    """Judge ``reading``'s cohort samples (see the module docstring). ``looks_spent`` and
    ``failed_before`` are the step's so far (:class:`~rollout.gates.verdict.StepCounts`)."""
    base = compare_base(spec, reading, min_samples)
    name = f"{spec.metric} (treatment vs control, rank)"
    skipped = not_compared(base, reading, name)
    if skipped is not None:
        return skipped
    if reading.cohort_samples is None:
        return MetricResult(**base, verdict=HOLD, value=None, samples=0, reason=f"{name}: no samples; held")
    (treatment, dropped_t), (control, dropped_c) = (_clean(list(c)) for c in reading.cohort_samples)
    n = min(len(treatment), len(control))
    said = []
    if dropped_t + dropped_c:
        said.append(f"{dropped_t + dropped_c} non-finite samples dropped")
    far = _outliers(treatment) + _outliers(control)
    if far:
        said.append(f"{far} outliers beyond Q3 + 3 IQR kept (ranks are not moved by how far)")
    notes = f"; {', '.join(said)}" if said else ""
    counts = f"{len(treatment)} treatment / {len(control)} control samples, {format_duration(reading.window)}"
    if n == 0 or n < min_samples:
        return MetricResult(
            **base,
            verdict=HOLD,
            value=None,
            samples=n,
            looks=looks_spent,
            reason=f"{name}: no data ({counts}; needs {min_samples} per cohort){notes}",
        )
    shift = hodges_lehmann(treatment, control)
    looks, alpha = looks_spent, (1.0 - confidence) / MAX_LOOKS
    shown = f"treatment {signed(shift, 'latency')} vs control (Hodges-Lehmann shift)"
    if looks < MAX_LOOKS and n >= min_samples * 2**looks:
        looks += 1
        p = mann_whitney_greater(treatment, control, spec.alert)
        if (confidence <= 0 and shift > spec.alert) or (confidence > 0 and p < alpha):
            reason = (
                f"{name}: {shown} > alert {signed(spec.alert, 'latency')}, treatment is worse than control "
                f"(Mann-Whitney p = {p:.2g} < {alpha:.2g} at look {looks} of {MAX_LOOKS}; {counts}){notes}"
            )
            return MetricResult(**base, verdict=FAIL, value=shift, samples=n, looks=looks, reason=reason)
    if failed_before:
        reason = f"{name}: failed at an earlier look of this step; {shown}{notes}"
        return MetricResult(**base, verdict=FAIL, value=shift, samples=n, looks=looks, reason=reason)
    if shift <= spec.target:
        reason = f"{name}: {shown} < target {signed(spec.target, 'latency')} ({counts}){notes}"
        return MetricResult(**base, verdict=PASS, value=shift, samples=n, looks=looks, reason=reason)
    reason = (
        f"{name}: {shown} above target {signed(spec.target, 'latency')}, not shown beyond alert "
        f"{signed(spec.alert, 'latency')} ({looks} of {MAX_LOOKS} looks spent; {counts}){notes}"
    )
    return MetricResult(**base, verdict=HOLD, value=shift, samples=n, looks=looks, reason=reason)


class RankJudgeKeys(BaseModel):
    """``judge: rank`` on a compare latency: Mann-Whitney on the cohorts' samples; a provider's query
    is read at every ``step`` over the window (one sample per point)."""

    model_config = ConfigDict(extra="forbid")
    judge: Literal["rank"]
    step: Duration | None = None


class RankJudge(JudgePlugin):
    """The ``rank`` compare judge, as a plugin."""

    name = "rank"
    config = RankJudgeKeys
    per_sample = True

    @staticmethod
    def judge(
        spec: MetricGate, reading: Reading, min_samples: int, confidence: float, gates: GateSet, counts: StepCounts
    ) -> MetricResult:
        name = spec.metric
        looks, failed = counts.looks.get(name, 0), counts.failures.get(name, 0) > 0
        return judge_rank(spec, reading, min_samples, confidence, looks, failed)
