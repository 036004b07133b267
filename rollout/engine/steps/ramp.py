"""The ``ramp`` step: the flag on for a growing share of customers, each share held on its gates.

One :func:`tick` is one look: write the percentage not applied yet, or evaluate the gates of the one
in force and carry out what :func:`rollout.engine.reconcile.decide_ramp` decides. :func:`run` ticks
until the step ends (a terminal's ``advance``); the agent's scheduler calls :func:`tick` itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rollout.engine.calendar import check_cutoff, shown_time
from rollout.engine.context import Held, MayNotMoveUp, RunContext
from rollout.engine.flagwrites import Announced, after, interrupted
from rollout.engine.killswitch import guard_not_rolled_back
from rollout.engine.observe import Watching, carry_out, evaluate, watching
from rollout.engine.reconcile import Act, Look, decide_ramp
from rollout.engine.state import Control, EnvState
from rollout.engine.steps.base import DONE, FAIL, StepResult, Wait, accept_hold, decided, wait_applied
from rollout.gates import FAIL as FAIL_VERDICT
from rollout.incident.words import intent_words
from rollout.playbook.model import Playbook, RampStep
from rollout.playbook.plugins import StepKind, target_events
from rollout.util.units import format_duration


def run(ctx: RunContext, step: RampStep, label: str) -> StepResult:
    """Tick until the ramp ends (see the module docstring)."""
    while True:
        result = tick(ctx, step, label)
        if isinstance(result, StepResult):
            return result
        ctx.clock.sleep(max(0.0, result.at - ctx.clock.time()))


def look(ctx: RunContext, step: RampStep) -> Look:
    return Look(step.hold, step.max_hold, step.interval or ctx.playbook.interval)


def tick(ctx: RunContext, step: RampStep, label: str) -> StepResult | Wait:
    """One look at the ramp: a write, or an evaluation and what it decides."""
    current = ctx.state.get(ctx.env_name)
    held = ctx.may_move_up()
    reason = held.words() if held is not None else None
    now = ctx.clock.time()
    decision = decide_ramp(current, step.percentages, look(ctx, step), None, Control(False, None), now, reason)
    if decision.act == Act.DONE:
        return StepResult(DONE, decision.reason)
    if decision.act == Act.WRITE:
        assert decision.percent is not None
        _window_opened(ctx, label)
        try:
            problem = _write(ctx, step, label, decision.percent)
        except MayNotMoveUp:  # refused as it was announced (another region took the budget): nothing written
            return Wait(ctx.clock.time() + look(ctx, step).interval)
        # the first look is one interval on: at the write itself the new cohort has no data yet
        return StepResult(FAIL, problem) if problem else Wait(ctx.clock.time() + look(ctx, step).interval)
    if decision.act == Act.WAIT:  # the next percentage waits for its window
        assert held is not None
        return _guarded_wait(ctx, step, label, current, held)
    percent = step.percentages[current.ramp_index]
    started = current.observe_started or ctx.clock.time()
    w = ctx.watching
    if not isinstance(w, Watching) or not w.same(label, percent, started):
        if accept_hold(ctx, label, percent):
            _next_percentage(ctx, current.ramp_index, percent)
            return Wait(ctx.clock.time())
        if ctx.wrote != (label, current.ramp_index):
            ctx.out.line(f"  resuming at {percent}% (applied before; not applied again)")
        w = ctx.watching = watching(ctx, step.gate, label, percent, started, look(ctx, step))
    verdict = evaluate(ctx, w)
    control = ctx.state.control(ctx.env_name)
    current = ctx.state.get(ctx.env_name)
    held = ctx.may_move_up()
    reason = held.words() if held is not None else None
    decision = carry_out(
        ctx, w, decide_ramp(current, step.percentages, w.look, verdict, control, ctx.clock.time(), reason), verdict
    )
    if decision.act == Act.WAIT:
        assert decision.next_at is not None
        if decision.held_by_schedule and held is not None:
            _window_closed(ctx, label, percent, held)
            if held.opens_at is not None:  # look again the moment the window opens
                return Wait(min(decision.next_at, max(held.opens_at, ctx.clock.time())))
        return Wait(decision.next_at)
    if decision.act == Act.PROMOTE_FULL:
        return _full(ctx, step, label, guard_not_rolled_back(ctx.env_name, ctx.state))
    if decision.act in (Act.ACCEPT, Act.PROMOTE):
        _window_opened(ctx, label)
        _next_percentage(ctx, current.ramp_index, percent)
        return Wait(ctx.clock.time())
    return decided(decision, verdict, step.on_hold_timeout)


def _window_closed(ctx: RunContext, label: str, percent: int | None, held: Held) -> None:
    """The first look that may not move up records why and when it next may (once per wait)."""
    if ctx.window_wait == (label, percent, held.kind):
        return
    _window_opened(ctx, label)  # one wait ends as another begins (a window opened, the budget holds)
    ctx.window_wait = (label, percent, held.kind)
    opens = (held.until or "not within a year") if held.opens_at is None else shown_time(ctx, held.opens_at)
    where = f"holding at {percent}%, guarded" if percent else "the flag stays as it is"
    now = ctx.clock.time()
    ctx.state.audit(
        ctx.env_name, f"{held.kind}_wait", now, step=label, percent=percent, why=list(held.why), opens=opens
    )
    ctx.state.update(ctx.env_name, now, reason=f"waiting to move up: {held.words()}; next opens {opens}")
    ctx.out.line(f"  not moving up now: {held.words()}; next opens {opens}; {where}", "yellow")


def _window_opened(ctx: RunContext, label: str) -> None:
    """A ramp that waited for its window (or the exposure budget) moves up now: said once."""
    if ctx.window_wait is None:
        return
    _, percent, kind = ctx.window_wait
    ctx.window_wait = None
    now = ctx.clock.time()
    ctx.state.audit(ctx.env_name, f"{kind}_open", now, step=label, percent=percent)
    ctx.state.update(ctx.env_name, now, reason=None)


def _guarded_wait(ctx: RunContext, step: RampStep, label: str, current: EnvState, held: Held) -> StepResult | Wait:
    """The next percentage waits for its window. What is in force meanwhile (the percentage before,
    or nothing) stays guarded: its gate is evaluated every interval, and a breach fails the step."""
    percent = current.percent if current.flag and current.percent else None
    _window_closed(ctx, label, percent, held)
    check_cutoff(ctx)
    interval = step.interval or ctx.playbook.interval
    now = ctx.clock.time()
    wake = now + interval if held.opens_at is None else min(now + interval, max(held.opens_at, now))
    if percent is None:
        return Wait(wake)
    w = ctx.watching
    if not isinstance(w, Watching) or w.percent != percent or w.step != label:
        applied = next(
            (a["ts"] for a in reversed(ctx.state.audit_log(ctx.env_name, limit=200)) if a["action"] == "ramp"), now
        )
        w = ctx.watching = watching(ctx, step.gate, label, percent, applied, look(ctx, step))
    verdict = evaluate(ctx, w)
    if verdict.verdict == FAIL_VERDICT:  # the guard: a breach while waiting turns the flag off
        return StepResult(FAIL, verdict.summary, verdict=verdict)
    return Wait(wake)


def _next_percentage(ctx: RunContext, ramp_index: int, percent: int) -> None:
    after("ramp", "accept", percent)
    ctx.watching = None
    ctx.state.update(
        ctx.env_name, ctx.clock.time(), ramp_index=ramp_index + 1, ramp_applied=False, observe_started=None
    )


def _write(ctx: RunContext, step: RampStep, label: str, percent: int) -> str | None:
    """The flag on for ``percent`` % through the guarded, announced write; then wait for the target
    to apply it. Returns a problem, or None."""
    left = interrupted(ctx.state, ctx.env_name)
    if left is not None:
        ctx.out.line(f"  an earlier run stopped while writing {intent_words(left['detail'])}; writing it again")
    write_check = ctx.write_check
    announced = Announced(
        ctx.state,
        ctx.env_name,
        ctx.clock,
        "ramp",
        flag=True,
        percent=percent,
        check=guard_not_rolled_back(ctx.env_name, ctx.state),
        step=label,
    )
    if write_check is not None:  # a waved phase's exposure budget, read again as the write is announced
        announced.in_tx = lambda db: write_check(db, percent)
    before = ctx.flags.set(enabled=True, percent=percent, guard=announced)
    after("ramp", "write", percent)
    now = ctx.clock.time()
    # the step's state and the entry completing the announced write commit together: a kill -9
    # leaves both or neither (with neither, the intent names the value and the next advance
    # writes the same percentage again and records it)
    with ctx.state.tx() as db:
        ctx.state.update(ctx.env_name, now, db=db, ramp_applied=True, percent=percent, flag=True, observe_started=now)
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
    current = ctx.state.get(ctx.env_name)
    ctx.wrote = (label, current.ramp_index)
    problem = wait_applied(ctx)
    if problem:
        return problem
    ctx.state.update(ctx.env_name, ctx.clock.time(), observe_started=ctx.clock.time())
    ctx.out.line(f"  flag on for {percent}% of customers; holding {step.hold:g}s", "bold")
    return None


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
    ctx.watching = None
    ctx.out.line(
        "  PROMOTED TO 100% NOW by a person (rollout promote --full); the ramp's remaining steps are skipped",
        "bold red",
    )
    problem = wait_applied(ctx)
    if problem:
        return StepResult(FAIL, problem)
    return StepResult(DONE, "promoted to 100% now by a person (rollout promote --full)")


def traffic_needed(step: Any, gates: Any, unit: str = "requests") -> str:
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
    needed = traffic_needed(step, playbook.gates[step.gate], target_events(playbook)) if playbook is not None else ""
    return f"{' -> '.join(f'{p}%' for p in step.percentages)}, each held {step.hold:g}s on gate {step.gate!r}{needed}"


class Kind(StepKind):
    """The ``ramp`` step kind."""

    name = "ramp"
    config = RampStep
    run = staticmethod(run)
    describe = staticmethod(describe)
    tick = staticmethod(tick)
