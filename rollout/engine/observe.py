"""Measure and judge over time: the loop shared by gate steps, ramps and ``rollout watch``."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from rollout.engine.context import RunContext
from rollout.engine.killswitch import RolledBackMeanwhile
from rollout.engine.state import ROLLED_BACK, step_at
from rollout.gates import FAIL, HOLD, PASS, StepCounts, Verdict, judge_readings, no_data, sample_ratio, with_check
from rollout.playbook.builtin import EMBEDDED
from rollout.playbook.model import GateSet
from rollout.providers.embedded import EmbeddedProvider
from rollout.targets import EmbeddedTarget
from rollout.util.errors import MeasurementError
from rollout.util.units import format_duration

PASSED, FAILED, HOLD_TIMEOUT, STOPPED = "passed", "failed", "hold_timeout", "stopped"
#: a person accepted the step now (``rollout promote``), or sent the ramp to 100 % (``--full``)
PROMOTED, PROMOTED_FULL = "promoted", "promoted_full"


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
    embedded = sources.providers.get(EMBEDDED)
    if (
        percent
        and elapsed is not None
        and elapsed >= SRM_SETTLE_S
        and isinstance(ctx.target, EmbeddedTarget)
        and isinstance(embedded, EmbeddedProvider)
    ):
        window = min(gates.window, elapsed - SRM_SETTLE_S / 2)
        try:
            inside, outside = embedded.cohort_counts(window)
        except MeasurementError:
            return verdict  # the gate metrics already say the service cannot be asked
        verdict = with_check(verdict, sample_ratio(inside, outside, percent, window))
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


def record(ctx: RunContext, verdict: Verdict, step: str, percent: int | None) -> None:
    ctx.state.record_verdict(
        ctx.env_name,
        ctx.clock.time(),
        ctx.phase.name,
        step,
        percent,
        verdict.verdict,
        verdict.summary,
        verdict.as_dicts(),
        ctx.commit,
        verdict.duration_s,
    )


@dataclass(frozen=True)
class Observation:
    result: str
    verdict: Verdict
    evaluations: int


def observe(
    ctx: RunContext,
    gate_name: str,
    duration: float,
    interval: float,
    max_hold: float,
    started_at: float,
    step: str,
    percent: int | None,
) -> Observation:
    """Evaluate ``gate_name`` every ``interval`` from ``started_at`` on.

    Returns at once on a fail, and on a stop for a person (a signal metric failed, a provider erred
    past its ``error_limit``). After ``duration``, returns on the first pass; a hold goes on until
    ``duration + max_hold``, then returns ``hold_timeout``. Windows never reach back before
    ``started_at``: what is judged is what happened at this step. The metrics' limits count from
    where the step's last recorded evaluation left them (a resumed step does not start again).
    """
    gates = ctx.playbook.gates[gate_name]
    counts = StepCounts(last_recorded(ctx, step, percent, started_at))
    evaluations = 0
    shown: str | None = None
    where = f"{step}{f' at {percent}%' if percent is not None else ''}"

    def show(verdict: Verdict, elapsed: float) -> None:
        nonlocal shown
        ctx.out.verdict(f"{where} (+{elapsed:.1f}s, evaluation {evaluations})", verdict)
        shown = verdict.verdict

    while True:
        if ctx.state.get(ctx.env_name).status == ROLLED_BACK:
            raise RolledBackMeanwhile(f"environment {ctx.env_name} was rolled back meanwhile; stopping")
        elapsed = ctx.clock.time() - started_at
        verdict = slow_traffic(
            measure(ctx, gates, cap=elapsed, percent=percent, elapsed=elapsed, counts=counts), duration
        )
        evaluations += 1
        record(ctx, verdict, step, percent)
        # people see each change of verdict and the deciding one; the state keeps every evaluation
        if verdict.verdict != shown:
            show(verdict, elapsed)
        result = None
        # `rollout gate` (CI) judges what it sees; a person's pause or promotion is for advances
        control = None if ctx.read_only else ctx.state.control(ctx.env_name)
        if verdict.verdict == FAIL:  # a guardrail breach turns the flag off, paused or not
            result = FAILED
        elif verdict.stop:
            result = STOPPED
        elif control is not None and control.promote:
            now = ctx.clock.time()
            here = control.promote_at == step_at(ctx.state.get(ctx.env_name))
            with ctx.state.tx() as db:
                ctx.state.set_control(ctx.env_name, now, db=db, promote=None)
                ctx.state.audit(
                    ctx.env_name,
                    "promotion_applied" if here else "promotion_dropped",
                    now,
                    db=db,
                    step=step,
                    percent=percent,
                    full=control.promote_kind == "full",
                    verdict=verdict.summary,
                    **({} if here else {"why": "asked at a step that has ended since; ask again for this one"}),
                )
            if here:
                result = PROMOTED_FULL if control.promote_kind == "full" else PROMOTED
        elif control is not None and control.paused:
            pass  # held at its percentage past its hold; the gates keep watching
        elif elapsed >= duration:
            if verdict.verdict == PASS:
                result = PASSED
            elif elapsed >= duration + max_hold:
                result = HOLD_TIMEOUT
        if result is not None:
            ctx.out.done_waiting()
            if evaluations > 1 and shown == verdict.verdict and result not in (FAILED, STOPPED):
                show(verdict, elapsed)
            return Observation(result, verdict, evaluations)
        line = progress_line(where, verdict, elapsed, duration, max_hold, interval)
        ctx.out.waiting(
            f"{where}: PAUSED by a person (rollout continue); {line}" if control and control.paused else line
        )
        ctx.clock.sleep(interval)


def last_recorded(ctx: RunContext, step: str, percent: int | None, since: float) -> list[dict[str, Any]]:
    """The metrics of the last evaluation recorded for this step at this percentage since ``since``."""
    for v in reversed(ctx.state.verdicts(ctx.env_name, limit=200)):
        if v["ts"] < since:
            break
        if v["step"] == step and v["percent"] == percent:
            return list(v["metrics"])
    return []
