"""The ``ramp`` step: the flag on for a growing share of customers, each share held on its gates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rollout.engine.context import RunContext
from rollout.engine.flagwrites import Announced, after, interrupted
from rollout.engine.killswitch import guard_not_rolled_back
from rollout.engine.observe import PROMOTED_FULL, observe
from rollout.engine.steps.base import DONE, FAIL, StepResult, accept_hold, observation_result, wait_applied
from rollout.engine.waiting import wait_for_window
from rollout.incident.words import intent_words
from rollout.playbook.model import Playbook, RampStep
from rollout.util.units import format_duration


def run(ctx: RunContext, step: RampStep, label: str) -> StepResult:
    interval = step.interval or ctx.playbook.interval
    guard = guard_not_rolled_back(ctx.env_name, ctx.state)
    while True:
        current = ctx.state.get(ctx.env_name)
        if current.ramp_index >= len(step.percentages):
            return StepResult(DONE, f"reached {step.percentages[-1]}%")
        percent = step.percentages[current.ramp_index]
        if not current.ramp_applied:
            left = interrupted(ctx.state, ctx.env_name)
            # moves up only when its schedule lets it, guarded (a write an earlier run announced is finished first)
            breach = wait_for_window(ctx, step, label) if left is None else None
            if breach is not None:
                return StepResult(FAIL, breach.summary, verdict=breach)
            if left is not None:
                ctx.out.line(f"  an earlier run stopped while writing {intent_words(left['detail'])}; writing it again")
            announced = Announced(
                ctx.state, ctx.env_name, ctx.clock, "ramp", flag=True, percent=percent, check=guard, step=label
            )
            before = ctx.flags.set(enabled=True, percent=percent, guard=announced)
            after("ramp", "write", percent)
            now = ctx.clock.time()
            # the step's state and the entry completing the announced write commit together: a kill -9
            # leaves both or neither (with neither, the intent names the value and the next advance
            # writes the same percentage again and records it)
            with ctx.state.tx() as db:
                ctx.state.update(
                    ctx.env_name, now, db=db, ramp_applied=True, percent=percent, flag=True, observe_started=now
                )
                ctx.state.audit(
                    ctx.env_name,
                    "ramp",
                    now,
                    db=db,
                    step=label,
                    percent=percent,
                    previous_percent=before.get(ctx.flags.percent_variable),
                    previous_flag=before.get(ctx.flags.flag_variable),
                    write=announced.write,
                )
            after("ramp", "record", percent)
            problem = wait_applied(ctx)
            if problem:
                return StepResult(FAIL, problem)
            ctx.state.update(ctx.env_name, ctx.clock.time(), observe_started=ctx.clock.time())
            ctx.out.line(f"  flag on for {percent}% of customers; holding {step.hold:g}s", "bold")
            current = ctx.state.get(ctx.env_name)
        else:
            if accept_hold(ctx, label, percent):
                after("ramp", "accept", percent)
                ctx.state.update(
                    ctx.env_name,
                    ctx.clock.time(),
                    ramp_index=current.ramp_index + 1,
                    ramp_applied=False,
                    observe_started=None,
                )
                continue
            ctx.out.line(f"  resuming at {percent}% (applied before; not applied again)")
        result = observe(
            ctx,
            step.gate,
            step.hold,
            interval,
            step.max_hold,
            current.observe_started or ctx.clock.time(),
            label,
            percent,
        )
        if result.result == PROMOTED_FULL:
            return _full(ctx, step, label, guard)
        outcome = observation_result(result, step.on_hold_timeout)
        if outcome.status != DONE:
            return outcome
        after("ramp", "accept", percent)
        ctx.state.update(
            ctx.env_name, ctx.clock.time(), ramp_index=current.ramp_index + 1, ramp_applied=False, observe_started=None
        )


def _full(ctx: RunContext, step: RampStep, label: str, guard: Callable[[], None]) -> StepResult:
    """``rollout promote --full``: the flag on for everyone now, recorded loudly; the ramp is done."""
    announced = Announced(
        ctx.state, ctx.env_name, ctx.clock, "promote_full", flag=True, percent=100, check=guard, step=label
    )
    before = ctx.flags.set(enabled=True, percent=100, guard=announced)
    now = ctx.clock.time()
    with ctx.state.tx() as db:
        ctx.state.update(
            ctx.env_name,
            now,
            db=db,
            ramp_index=len(step.percentages),
            ramp_applied=False,
            percent=100,
            flag=True,
            observe_started=None,
        )
        ctx.state.audit(
            ctx.env_name,
            "ramp",
            now,
            db=db,
            step=label,
            percent=100,
            full_promotion=True,
            previous_percent=before.get(ctx.flags.percent_variable),
            previous_flag=before.get(ctx.flags.flag_variable),
            write=announced.write,
        )
    ctx.out.line(
        "  PROMOTED TO 100% NOW by a person (rollout promote --full); the ramp's remaining steps are skipped",
        "bold red",
    )
    problem = wait_applied(ctx)
    if problem:
        return StepResult(FAIL, problem)
    return StepResult(DONE, "promoted to 100% now by a person (rollout promote --full)")


def traffic_needed(step: Any, gates: Any, unit: str = "bookings") -> str:
    """What a ramp's gates need to decide in one window: ``min_samples`` per metric, at the smallest
    share a metric sees (the cohort at the first percentage; for a compare metric, also the control
    at the last percentage below 100)."""
    window = min(gates.window, step.hold)
    shares = [p / 100 for p in step.percentages if p < 100]
    if any(m.kind == "compare" for m in gates.metrics):
        shares += [(100 - p) / 100 for p in step.percentages if p < 100]
    if not shares or window <= 0:
        return ""
    share = min(shares)
    samples = max((gates.min_samples if m.min_samples is None else m.min_samples) for m in gates.metrics)
    rate = samples / window / share
    return (
        f"; deciding needs {samples} samples per metric in a {format_duration(window)} window: about "
        f"{rate:.2g} {unit}/s overall at {share * 100:g}% (less and the steps hold, then "
        f"{'wait for approval' if step.on_hold_timeout == 'approve' else 'fail'})"
    )


def describe(step: RampStep, playbook: Playbook | None = None) -> str:
    unit = "requests" if playbook is not None and playbook.target.kind == "http" else "bookings"
    needed = traffic_needed(step, playbook.gates[step.gate], unit) if playbook is not None else ""
    return f"{' -> '.join(f'{p}%' for p in step.percentages)}, each held {step.hold:g}s on gate {step.gate!r}{needed}"
