"""A gate set's verdict from one reading per metric: each metric judged (a threshold, or treatment
against control), the worst deciding; the sample-ratio check beside them; no data as a hold."""

from __future__ import annotations

from typing import Any

from rollout.gates.compare import judge_compare
from rollout.gates.judge import judge
from rollout.gates.results import FAIL, HOLD, PASS, MetricResult, Reading, Verdict, worst
from rollout.playbook.model import GateSet, MetricGate
from rollout.stats import chi_square_p


def judge_readings(gates: GateSet, readings: list[Reading]) -> Verdict:
    """Judge every metric of ``gates`` from one :class:`Reading` each (in the gates' order). A
    reading that failed is a hold naming the error; when all failed, the verdict says so."""
    results = []
    for spec, reading in zip(gates.metrics, readings, strict=True):
        min_samples = gates.min_samples if spec.min_samples is None else spec.min_samples
        if reading.error is not None:
            results.append(held(spec, min_samples, reading.window, f"{spec.metric}: no data ({reading.error})"))
            continue
        try:
            if spec.kind == "compare":
                results.append(judge_compare(spec, reading, min_samples, gates.confidence, gates.pass_when))
            else:
                results.append(
                    judge(
                        spec,
                        reading.value,
                        reading.samples,
                        min_samples,
                        reading.window,
                        gates.confidence,
                        gates.test,
                        sd=reading.sd,
                        above=reading.above,
                        pass_when=gates.pass_when,
                    )
                )
        except (ArithmeticError, ValueError, TypeError) as exc:
            # a value the statistics cannot take (1e308 overflows an interval): no verdict, never a crash
            reason = (
                f"{spec.metric}: {reading.value!r} from {reading.samples} samples could not be "
                f"judged ({type(exc).__name__}: {exc}); held"
            )
            results.append(held(spec, min_samples, reading.window, reason, reading.samples))
    decided = worst(r.verdict for r in results)
    errors = sorted({r.error for r in readings if r.error})
    all_failed = bool(readings) and all(r.error for r in readings)
    return Verdict(decided, tuple(results), error=f"metrics unavailable: {'; '.join(errors)}" if all_failed else None)


def windows_needed(gates: GateSet) -> list[float]:
    """The distinct windows the gate set reads."""
    return sorted({spec.window or gates.window for spec in gates.metrics})


def no_data(gates: GateSet, error: str) -> Verdict:
    """A hold for every metric because the measurement itself failed."""
    results = tuple(
        held(
            spec,
            gates.min_samples if spec.min_samples is None else spec.min_samples,
            spec.window or gates.window,
            f"{spec.metric}: no data ({error})",
        )
        for spec in gates.metrics
    )
    return Verdict(HOLD, results, error=f"metrics unavailable: {error}")


def held(spec: MetricGate, min_samples: int, window: float, reason: str, samples: int = 0) -> MetricResult:
    """``spec``'s metric held with no value, for ``reason`` (no data, or a value that cannot be judged)."""
    return MetricResult(
        spec.metric,
        HOLD,
        None,
        spec.target,
        spec.alert,
        samples,
        min_samples,
        window,
        reason,
        unit=spec.unit,
        provider=spec.provider,
    )


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
    base: dict[str, Any] = dict(
        metric="sample_ratio",
        value=share,
        target=percent / 100.0,
        alert=percent / 100.0,
        samples=total,
        min_samples=SRM_MIN_COUNT,
        window_seconds=window,
        unit="rate",
    )
    seen = f"{in_cohort} of {total} decided bookings ({share * 100:.1f}%) went to the cohort at {percent}%"
    if p_value < SRM_ALPHA:
        return MetricResult(
            **base,
            verdict=FAIL,
            reason=(
                f"sample ratio mismatch: {seen} (chi-square p = {p_value:.1e} < {SRM_ALPHA:g}): bucketing is broken, "
                "not the feature; check the group id and the percentage the service reads"
            ),
        )
    return MetricResult(**base, verdict=PASS, reason=f"sample ratio: {seen} (chi-square p = {p_value:.2f})")


def with_check(verdict: Verdict, check: MetricResult | None) -> Verdict:
    """``verdict`` with one more result (the sample-ratio check), the worst deciding."""
    if check is None:
        return verdict
    decided = worst((verdict.verdict, check.verdict))
    return Verdict(decided, (*verdict.metrics, check), verdict.error)
