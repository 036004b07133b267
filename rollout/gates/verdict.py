"""A gate set's verdict from one reading per metric: each metric judged (a threshold, or treatment
against control), the worst deciding; the sample-ratio check beside them; no data as a hold."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rollout.gates.alert import judge_alert
from rollout.gates.health import no_traffic, on_breach
from rollout.gates.judge import judge
from rollout.gates.results import FAIL, HOLD, PASS, MetricResult, Reading, Verdict, worst
from rollout.playbook.model import GateSet, MetricGate
from rollout.playbook.plugins import JUDGES
from rollout.stats import chi_square_p
from rollout.util.units import format_duration


class StepCounts:
    """What a metric's limits count within one step: its failing evaluations (``failure_limit``) and
    its provider errors in a row (``error_limit``). Restored from the step's last recorded verdict, so
    a resumed step goes on counting where it stopped."""

    def __init__(self, recorded: list[dict[str, Any]] | None = None) -> None:
        self.failures: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        #: a rank judge's looks spent in the step
        self.looks: dict[str, int] = {}
        for m in recorded or []:
            self.failures[m["metric"]] = int(m.get("failures") or 0)
            self.errors[m["metric"]] = int(m.get("errors_in_a_row") or 0)
            self.looks[m["metric"]] = int(m.get("looks") or 0)


def judge_readings(
    gates: GateSet, readings: list[Reading], elapsed: float | None = None, counts: StepCounts | None = None
) -> Verdict:
    """Judge every metric of ``gates`` from one :class:`Reading` each (in the gates' order). A
    reading that failed is a hold naming the error; when all failed, the verdict says so.

    ``elapsed`` (seconds into the step) holds a metric before its ``initial_delay`` and applies its
    ``on_no_traffic`` action once it has seen no traffic past its grace; ``counts`` (the step's,
    kept by the caller across evaluations) applies ``failure_limit`` and ``error_limit``. Then the
    roles and ``on_guardrail`` decide (:func:`settle`)."""
    results = []
    counts = counts or StepCounts()
    for spec, reading in zip(gates.metrics, readings, strict=True):
        min_samples = gates.min_samples if spec.min_samples is None else spec.min_samples
        if reading.error is not None:
            results.append(
                held(spec, min_samples, reading.window, f"{spec.metric}: no data ({reading.error})", errored=True)
            )
            continue
        if elapsed is not None and elapsed < spec.initial_delay:
            reason = (
                f"{spec.metric}: not judged before its initial_delay {format_duration(spec.initial_delay)} "
                f"({format_duration(elapsed)} into the step)"
            )
            results.append(held(spec, min_samples, reading.window, reason, reading.samples))
            continue
        confidence = gates.metric_confidence(spec)
        try:
            if spec.kind == "alert":
                results.append(judge_alert(spec, reading))
            elif spec.kind == "compare":
                results.append(JUDGES.get(spec.judge).judge(spec, reading, min_samples, confidence, gates, counts))
            else:
                results.append(
                    judge(
                        spec,
                        reading.value,
                        reading.samples,
                        min_samples,
                        reading.window,
                        confidence,
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
        results[-1] = no_traffic(gates, spec, reading, results[-1], elapsed)
    errors = sorted({r.error for r in readings if r.error})
    all_failed = bool(readings) and all(r.error for r in readings)
    verdict = settle(gates, results, counts, f"metrics unavailable: {'; '.join(errors)}" if all_failed else None)
    return replace(verdict, readings=tuple(readings))


def settle(gates: GateSet, results: list[MetricResult], counts: StepCounts, error: str | None = None) -> Verdict:
    """The limits, then the roles. A failing evaluation within a metric's ``failure_limit`` holds
    (and is counted); a provider error counts towards ``error_limit``, never as a failure. A
    guardrail's fail fails the verdict (the flag goes off); a signal's fail, or a provider past its
    ``error_limit``, holds it and says why a person must decide (``Verdict.stop``); a shadow is
    judged and shown and never decides."""
    settled, stops = [], []
    for spec, result in zip(gates.metrics, results, strict=True):
        name = spec.metric
        counts.errors[name] = counts.errors.get(name, 0) + 1 if result.errored else 0
        if result.verdict == FAIL:
            counts.failures[name] = counts.failures.get(name, 0) + 1
        failures, errors = counts.failures.get(name, 0), counts.errors[name]
        if result.looks:
            counts.looks[name] = result.looks
        if result.verdict == FAIL and failures < spec.failure_limit:
            result = replace(
                result,
                verdict=HOLD,
                reason=f"{result.reason}; failing evaluation {failures} of the {spec.failure_limit} allowed",
            )
        result = replace(result, role=spec.role, failures=failures, errors_in_a_row=errors)
        if spec.role == "guardrail":
            result = on_breach(result, gates.on_guardrail, "on_guardrail")
        if spec.role == "signal" and result.verdict == FAIL:
            stops.append(f"signal {result.reason}")
        if spec.role != "shadow" and spec.error_limit is not None and errors >= spec.error_limit:
            stops.append(f"{name}: {errors} provider errors in a row (error_limit {spec.error_limit})")
        settled.append(result)
    deciding = [
        r.verdict if r.role == "guardrail" else HOLD if r.verdict == FAIL else r.verdict for r in settled if r.decides
    ]
    return Verdict(worst(deciding) if deciding else PASS, tuple(settled), error=error, stop="; ".join(stops) or None)


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
    return Verdict(
        HOLD,
        tuple(replace(r, role=spec.role, errored=True) for r, spec in zip(results, gates.metrics, strict=True)),
        error=f"metrics unavailable: {error}",
    )


def held(
    spec: MetricGate, min_samples: int, window: float, reason: str, samples: int = 0, errored: bool = False
) -> MetricResult:
    """``spec``'s metric held with no value, for ``reason`` (no data, not judged yet, or a value that
    cannot be judged); ``errored`` when its provider could not be asked."""
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
        errored=errored,
    )


#: the sample-ratio check: fewer decided events than this say nothing; below this p-value, bucketing is broken
SRM_MIN_COUNT, SRM_ALPHA = 100, 0.001


def sample_ratio(
    in_cohort: int, out_of_cohort: int, percent: int, window: float, events: str = "requests"
) -> MetricResult | None:
    """Did the service put ``percent`` % of the decided ``events`` (the target's word for
    them) in the cohort? A chi-square goodness-of-fit test (one degree of freedom); None below
    :data:`SRM_MIN_COUNT` of them.

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
    seen = f"{in_cohort} of {total} decided {events} ({share * 100:.1f}%) went to the cohort at {percent}%"
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


def with_check(verdict: Verdict, check: MetricResult | None, action: str = "rollback") -> Verdict:
    """``verdict`` with one more result (the sample-ratio check), the worst deciding; a mismatch
    takes ``action`` (the gate set's ``on_srm``: ``rollback`` fails, ``hold`` holds, ``warn`` only says so)."""
    if check is None:
        return verdict
    check = on_breach(check, action, "on_srm")
    decided = worst((verdict.verdict, check.verdict)) if check.decides else verdict.verdict
    return replace(verdict, verdict=decided, metrics=(*verdict.metrics, check))
