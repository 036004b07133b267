"""Replaying recorded evaluations against a candidate gate set: pure, no I/O.

Every evaluation the engine records keeps, beside each metric's results, what its judge read (the
state store's ``readings`` of the evaluation, by metric, :func:`encode_reading`; the store joins each into its
metric's result as ``reading`` when asked): the value and its
samples, a mean's standard deviation and a percentile's count beyond its alert, each cohort's value,
count and spread (which is its count, sum and sum of squares), the rank judge's samples, the window
and the time into the step. That is all a judge needs, so a replay with the same gate set gives the
same verdicts, exactly, and a changed one (thresholds, ``min_samples``, ``confidence``, ``test``,
``pass_when``, ``correction``, judges, roles, limits) gives what it would have decided on the same
readings. What no record can give: another window or interval (the readings are over the recorded
windows, at the recorded times), and a metric that was not measured.

Records from before readings were kept hold each metric's value and samples only: a rate, a count or
a gauge replays from those exactly; a mean latency without its spread, a percentile without its count
and a compare metric without its cohorts cannot, and :func:`readings_for` says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rollout.gates.results import FAIL, HOLD, PASS, Reading, Verdict, fmt
from rollout.gates.verdict import StepCounts, judge_readings, sample_ratio, with_check
from rollout.playbook.model import GateSet, MetricGate
from rollout.stats import Cohort


def _finite(value: Any) -> Any:
    """JSON (and PostgreSQL's jsonb) has no NaN or infinity: a non-finite sample is kept as null, which
    the rank judge drops and counts exactly as it drops and counts a NaN."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


def encode_reading(reading: Reading, elapsed: float | None) -> dict[str, Any]:
    """What a judge read, as JSON (floats kept exactly; a non-finite sample as null)."""
    data: dict[str, Any] = {"value": _finite(reading.value), "samples": reading.samples, "window": reading.window}
    if elapsed is not None:
        data["elapsed"] = elapsed
    for name in ("error", "sd", "above", "percent"):
        if getattr(reading, name) is not None:
            data[name] = getattr(reading, name)
    if reading.cohorts is not None:
        data["cohorts"] = [[c.value, c.samples, c.sd] for c in reading.cohorts]
    if reading.cohort_samples is not None:
        data["cohort_samples"] = [[_finite(v) for v in s] for s in reading.cohort_samples]
    return data


def decode_reading(data: dict[str, Any]) -> Reading:
    """The :class:`Reading` :func:`encode_reading` kept."""
    cohorts = data.get("cohorts")
    samples = data.get("cohort_samples")
    return Reading(
        data.get("value"),
        int(data.get("samples") or 0),
        float(data.get("window") or 0.0),
        error=data.get("error"),
        cohorts=(Cohort(*cohorts[0]), Cohort(*cohorts[1])) if cohorts else None,
        percent=data.get("percent"),
        sd=data.get("sd"),
        above=data.get("above"),
        cohort_samples=(list(samples[0]), list(samples[1])) if samples else None,
    )


def legacy_reading(spec: MetricGate, recorded: dict[str, Any]) -> Reading | None:
    """A reading rebuilt from a result recorded before readings were kept, where the judge needs no
    more than its value and samples (rates, counts, gauges); None where it does."""
    if spec.kind == "compare" or spec.unit == "latency":
        return None
    window = float(recorded.get("window_seconds") or 0.0)
    if recorded.get("errored"):
        return Reading(None, 0, window, error="recorded as a provider error")
    return Reading(recorded.get("value"), int(recorded.get("samples") or 0), window)


@dataclass
class Replayable:
    """The candidate's metrics this record can replay, their readings, and what it cannot."""

    gates: GateSet | None
    readings: list[Reading]
    missing: list[str] = field(default_factory=list)
    legacy: bool = False


def readings_for(candidate: GateSet, metrics: list[dict[str, Any]]) -> Replayable:
    """The readings of one recorded evaluation for ``candidate``'s metrics. A metric not measured then,
    or recorded without what its judge needs, is left out and named (the gate set replayed is the
    candidate without it)."""
    recorded = {m.get("metric"): m for m in metrics}
    kept, readings, missing, legacy = [], [], [], False
    for spec in candidate.metrics:
        found = recorded.get(spec.metric)
        if found is None:
            missing.append(f"{spec.metric}: not measured in this record")
            continue
        if isinstance(found.get("reading"), dict):
            readings.append(decode_reading(found["reading"]))
        else:
            rebuilt = legacy_reading(spec, found)
            if rebuilt is None:
                missing.append(
                    f"{spec.metric}: recorded before readings were kept; a {spec.unit or spec.kind} "
                    "needs its spread, count or cohorts"
                )
                continue
            readings.append(rebuilt)
            legacy = True
        kept.append(spec)
    if not kept or all(s.role == "shadow" for s in kept):
        return Replayable(None, [], missing, legacy)
    return Replayable(candidate.model_copy(update={"metrics": kept}), readings, missing, legacy)


def elapsed_of(metrics: list[dict[str, Any]]) -> float | None:
    """The time into the step an evaluation was taken at, as its readings recorded it."""
    for m in metrics:
        reading = m.get("reading")
        if isinstance(reading, dict) and reading.get("elapsed") is not None:
            return float(reading["elapsed"])
    return None


def replay_evaluation(
    candidate: GateSet,
    metrics: list[dict[str, Any]],
    percent: int | None,
    elapsed: float | None,
    counts: StepCounts,
    events: str = "requests",
) -> tuple[Verdict | None, Replayable]:
    """The candidate's verdict on one recorded evaluation (None when nothing of it can be replayed),
    the sample-ratio check joined in as it was recorded (``events``: the target's word for them)."""
    replayable = readings_for(candidate, metrics)
    if replayable.gates is None:
        return None, replayable
    verdict = judge_readings(replayable.gates, replayable.readings, elapsed, counts)
    ratio = next((m for m in metrics if m.get("metric") == "sample_ratio"), None)
    if ratio is not None and percent and ratio.get("value") is not None:
        total = int(ratio.get("samples") or 0)
        inside = round(float(ratio["value"]) * total)
        window = ratio.get("window_seconds") or 0
        verdict = with_check(verdict, sample_ratio(inside, total - inside, percent, window, events))
    return verdict, replayable


@dataclass
class StepReplay:
    """One step of a recorded run (its evaluations at one percentage), replayed."""

    step: str
    percent: int | None
    rows: list[dict[str, Any]]
    #: how the candidate would have ended the step: fail, stop, pass, hold_timeout, or undecided
    #: (the record ends first), and when (the evaluation's time)
    decided: str
    decided_at: float | None
    missing: list[str]
    legacy: bool


def replay_step(
    candidate: GateSet,
    evaluations: list[dict[str, Any]],
    hold: float,
    max_hold: float,
    started: float,
    events: str = "requests",
) -> StepReplay:
    """Replay one step's recorded evaluations (as the state store keeps them, oldest first) with
    ``candidate``: each evaluation's replayed verdict beside the recorded one, and how the candidate
    would have ended the step (a fail or a stop at once; a pass once ``hold`` has passed; a hold past
    ``hold + max_hold``). ``started`` is when the step began (for records without their elapsed); ``events`` is the
    target's word for its traffic."""
    counts = StepCounts()
    rows: list[dict[str, Any]] = []
    decided, decided_at = "undecided", None
    missing: set[str] = set()
    legacy = False
    first = evaluations[0] if evaluations else {}
    for v in evaluations:
        metrics = list(v.get("metrics") or [])
        elapsed = elapsed_of(metrics)
        if elapsed is None:
            elapsed = max(0.0, float(v["ts"]) - started)
        verdict, replayable = replay_evaluation(candidate, metrics, v.get("percent"), elapsed, counts, events)
        missing.update(replayable.missing)
        legacy = legacy or replayable.legacy
        replayed = verdict.verdict if verdict is not None else None
        row = {
            "ts": v["ts"],
            "elapsed": elapsed,
            "step": v.get("step"),
            "percent": v.get("percent"),
            "recorded": v.get("verdict"),
            "replayed": replayed,
            "recorded_summary": v.get("summary"),
            "replayed_summary": verdict.summary if verdict is not None else "not replayable",
            "deciding": deciding_metric(verdict) if verdict is not None else None,
            "recorded_metrics": {m.get("metric"): m.get("verdict") for m in metrics},
            "recorded_values": [{k: x for k, x in m.items() if k != "reading"} for m in metrics],
            "replayed_metrics": {m.metric: m.verdict for m in verdict.metrics} if verdict is not None else {},
            "metrics": [m.as_dict() for m in verdict.metrics] if verdict is not None else [],
        }
        if decided == "undecided":
            if replayed == FAIL:
                decided, decided_at = "fail", v["ts"]
            elif verdict is not None and verdict.stop:
                decided, decided_at = "stop", v["ts"]
            elif replayed == PASS and elapsed >= hold:
                decided, decided_at = "pass", v["ts"]
            elif replayed == HOLD and elapsed >= hold + max_hold:
                decided, decided_at = "hold_timeout", v["ts"]
        rows.append(row)
    return StepReplay(str(first.get("step")), first.get("percent"), rows, decided, decided_at, sorted(missing), legacy)


def deciding_metric(verdict: Verdict) -> str:
    """The metric that decided ``verdict``, shortly: ``error_rate 12.50% (fail)``."""
    deciding = [m for m in verdict.metrics if m.verdict == verdict.verdict and m.role != "shadow"]
    if not deciding:
        return ""
    m = deciding[0]
    return f"{m.metric} {fmt(m.metric, m.value, m.unit)} ({m.verdict})"
