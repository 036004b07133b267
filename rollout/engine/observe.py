"""Measure and judge: one evaluation of a gate set, and what an observation (a gate step, a ramp's
percentage, ``rollout watch``, the agent's bake) remembers between evaluations. What to do with a
verdict is decided in :mod:`rollout.engine.reconcile`; :func:`carry_out` records its effects."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from rollout.engine.calendar import check_cutoff
from rollout.engine.context import RunContext
from rollout.engine.reconcile import Act, Decision, Look
from rollout.engine.warnings import announce_warnings
from rollout.gates import HOLD, StepCounts, Verdict, judge_readings, no_data, sample_ratio, with_check
from rollout.gates.replay import encode_reading
from rollout.playbook.builtin import EMBEDDED
from rollout.playbook.model import GateSet
from rollout.playbook.plugins import target_events
from rollout.util.errors import MeasurementError
from rollout.util.units import format_duration

#: the sample-ratio check waits this long into a step, so no decision of the step before is counted
SRM_SETTLE_S = 2.0


def measure(
    ctx: RunContext,
    gates: GateSet,
    cap: float | None = None,
    percent: int | None = None,
    elapsed: float | None = None,
    counts: StepCounts | None = None,
) -> Verdict:
    """Ask each metric's provider for its window (each capped at ``cap`` seconds), then judge. With
    ``elapsed`` (the time since the step's percentage was applied), a metric waits for its
    ``initial_delay`` and the sample-ratio check joins in once its window lies wholly inside the
    step; ``counts`` carries the step's failing evaluations and provider errors from one
    evaluation to the next."""
    started = time.perf_counter()  # the evaluation's own cost: wall time, whatever clock the run keeps
    verdict = _measured(ctx, gates, cap, percent, elapsed, counts)
    return dataclasses.replace(verdict, duration_s=time.perf_counter() - started)


def _measured(
    ctx: RunContext,
    gates: GateSet,
    cap: float | None,
    percent: int | None,
    elapsed: float | None,
    counts: StepCounts | None,
) -> Verdict:
    sources = ctx.metrics
    try:
        verdict = judge_readings(gates, sources.read(gates, ctx.clock.time(), percent, cap), elapsed, counts)
    except Exception as exc:  # noqa: BLE001 - an evaluation that cannot be completed is a hold, never a crash
        return no_data(gates, f"the evaluation could not be completed ({type(exc).__name__}: {exc})")
    # a target whose service decides each request's cohort can be checked for a sample ratio mismatch
    counts = getattr(sources.providers.get(EMBEDDED), "cohort_counts", None)
    if (
        percent
        and elapsed is not None
        and elapsed >= SRM_SETTLE_S
        and getattr(ctx.target, "counts_cohorts", False)
        and counts is not None
    ):
        window = min(gates.window, elapsed - SRM_SETTLE_S / 2)
        try:
            inside, outside = counts(window)
        except MeasurementError:
            return verdict  # the gate metrics already say the service cannot be asked
        events = target_events(ctx.playbook)
        verdict = with_check(verdict, sample_ratio(inside, outside, percent, window, events), gates.on_srm)
    return verdict


def progress_line(where: str, verdict: Verdict, elapsed: float, hold: float, max_hold: float, interval: float) -> str:
    """What a person watching a hold wants to know: time left, next evaluation, samples, verdict."""
    left = hold - elapsed
    when = (
        f"{format_duration(left)} left in the hold"
        if left > 0
        else f"holding past the hold, {format_duration(max(0.0, hold + max_hold - elapsed))} before a person decides"
    )
    samples = ", ".join(f"{m.metric} {m.samples}/{m.min_samples}" for m in verdict.metrics)
    return (
        f"{where}: {verdict.verdict.upper()}; {when}; next evaluation in {format_duration(interval)}; samples {samples}"
    )


def slow_traffic(verdict: Verdict, hold: float) -> Verdict:
    """Say early when the traffic cannot reach a decision within the hold: a metric short of its
    samples gets the projection (``at 0.4 samples/s this step needs about 40m to decide; the hold
    is 30m``) in its reason."""
    if verdict.verdict != HOLD or hold <= 0:
        return verdict
    results = []
    for m in verdict.metrics:
        if m.verdict == HOLD and m.value is not None and 0 < m.samples < m.min_samples and m.window_seconds > 0:
            rate = m.samples / m.window_seconds
            needed = m.min_samples / rate
            if needed > hold:
                m = dataclasses.replace(
                    m,
                    reason=f"{m.reason}; at {rate:.2g} samples/s this step needs about "
                    f"{format_duration(needed)} to decide; the hold is {format_duration(hold)}",
                )
        results.append(m)
    return dataclasses.replace(verdict, metrics=tuple(results))


def record(ctx: RunContext, verdict: Verdict, step: str, percent: int | None, elapsed: float | None = None) -> None:
    """One evaluation into the state store, with what each metric's judge read, so ``rollout backtest``
    can judge it again exactly (:mod:`rollout.gates.replay`)."""
    announce_warnings(ctx, verdict, step, percent)  # a health action's `warn`: said and notified once
    metrics = verdict.as_dicts()
    readings = {
        m["metric"]: encode_reading(reading, elapsed)
        for m, reading in zip(metrics, verdict.readings or (), strict=False)
    }
    ctx.state.record_verdict(
        ctx.env_name,
        ctx.clock.time(),
        ctx.phase.name,
        step,
        percent,
        verdict.verdict,
        verdict.summary,
        metrics,
        ctx.commit,
        verdict.duration_s,
        readings or None,
    )


@dataclass
class Watching:
    """One observation, as this process remembers it between evaluations: what it watches, since
    when, what a person was last shown, and the metrics' limits counted across evaluations (restored
    from the step's last recorded evaluation, so a resumed or taken-over step goes on counting)."""

    gates: GateSet
    step: str
    percent: int | None
    started_at: float
    look: Look
    counts: StepCounts
    evaluations: int = 0
    shown: str | None = None

    @property
    def where(self) -> str:
        return f"{self.step}{f' at {self.percent}%' if self.percent is not None else ''}"

    def same(self, step: str, percent: int | None, started_at: float) -> bool:
        """Is this the observation of ``step`` at ``percent`` begun at ``started_at``?"""
        return (self.step, self.percent, self.started_at) == (step, percent, started_at)


def watching(
    ctx: RunContext, gate_name: str, step: str, percent: int | None, started_at: float, look: Look
) -> Watching:
    """Begin (or pick up) the observation of ``step`` at ``percent`` from ``started_at``."""
    return Watching(
        ctx.playbook.gates[gate_name],
        step,
        percent,
        started_at,
        look,
        StepCounts(last_recorded(ctx, step, percent, started_at)),
    )


def evaluate(ctx: RunContext, w: Watching) -> Verdict:
    """One evaluation of ``w``: measure (windows never reaching back before ``w.started_at``), judge,
    record it, and show a person each change of verdict."""
    elapsed = ctx.clock.time() - w.started_at
    verdict = slow_traffic(
        measure(ctx, w.gates, cap=elapsed, percent=w.percent, elapsed=elapsed, counts=w.counts),
        w.look.hold,
    )
    w.evaluations += 1
    record(ctx, verdict, w.step, w.percent, elapsed)
    if verdict.verdict != w.shown:
        _show(ctx, w, verdict, elapsed)
    return verdict


def _show(ctx: RunContext, w: Watching, verdict: Verdict, elapsed: float) -> None:
    ctx.out.verdict(f"{w.where} (+{elapsed:.1f}s, evaluation {w.evaluations})", verdict)
    w.shown = verdict.verdict


def carry_out(ctx: RunContext, w: Watching, decision: Decision, verdict: Verdict) -> Decision:
    """The effects a decision has on the record and on what a person sees, the same for every
    observing step: a promotion applied or dropped (recorded, cleared), the waiting line, the
    deciding verdict shown once more when it ends a run of the same verdicts. Returns the decision."""
    now = ctx.clock.time()
    if decision.act in (Act.PROMOTE, Act.PROMOTE_FULL) or decision.drop_promotion:
        applied = not decision.drop_promotion
        control = ctx.state.control(ctx.env_name)
        with ctx.state.tx() as db:
            ctx.state.set_control(ctx.env_name, now, db=db, promote=None)
            ctx.state.audit(
                ctx.env_name,
                "promotion_applied" if applied else "promotion_dropped",
                now,
                db=db,
                step=w.step,
                percent=w.percent,
                full=control.promote_kind == "full",
                verdict=verdict.summary,
                **({} if applied else {"why": "asked at a step that has ended since; ask again for this one"}),
            )
    if decision.act == Act.WAIT:
        check_cutoff(ctx)  # the phase's cutoff ends a hold that goes on: the step fails, the flag goes off
        elapsed = now - w.started_at
        line = progress_line(w.where, verdict, elapsed, w.look.hold, w.look.max_hold, w.look.interval)
        if decision.held_by_schedule:
            line = f"{w.where}: PASSING, waiting: {decision.held_by_schedule}; {line}"
        elif decision.reason == "paused by a person":
            line = f"{w.where}: PAUSED by a person (rollout continue); {line}"
        ctx.out.waiting(line)
        return decision
    ctx.out.done_waiting()
    if w.evaluations > 1 and w.shown == verdict.verdict and decision.act not in (Act.TURN_OFF, Act.STOP):
        _show(ctx, w, verdict, now - w.started_at)
    return decision


def last_recorded(ctx: RunContext, step: str, percent: int | None, since: float) -> list[dict[str, Any]]:
    """The metrics of the last evaluation recorded for this step at this percentage since ``since``."""
    for v in reversed(ctx.state.verdicts(ctx.env_name, limit=200)):
        if v["ts"] < since:
            break
        if v["step"] == step and v["percent"] == percent:
            return list(v["metrics"])
    return []
