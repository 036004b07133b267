"""What an advance waits for, and what it checks, before a ramp moves: the phase's start, its
cutoff, its preflight, and the windows and freezes of its schedule.

Waiting never weakens the guard: while a percentage is in force and the schedule says "not now",
its gates are still evaluated every interval and a breach still turns the flag off. Nothing here
stands before a flag-off: a window or a freeze only ever delays a move *up*.
"""

from __future__ import annotations

from rollout.engine.calendar import CutoffPassed, check_cutoff, schedule_of
from rollout.engine.context import RunContext
from rollout.engine.killswitch import OffPath, RolledBackMeanwhile, switch_off
from rollout.engine.observe import last_recorded, measure, record
from rollout.engine.outcome import RunOutcome
from rollout.engine.preflight import run_preflight
from rollout.engine.state import IDLE, ROLLED_BACK
from rollout.gates import FAIL, StepCounts, Verdict
from rollout.playbook.model import RampStep
from rollout.playbook.schedule import show
from rollout.util.errors import EXIT_HELD, EXIT_USAGE
from rollout.util.units import format_duration

#: the longest an armed advance sleeps between looks at the state (a rollback meanwhile stops it)
ARMED_POLL_S = 60.0


def _started(ctx: RunContext) -> bool:
    """Has this phase begun changing things (a step past the first, or the flag recorded on)?"""
    current = ctx.state.get(ctx.env_name)
    return current.phase == ctx.phase.name and (current.step_index > 0 or bool(current.flag))


def before_phase(ctx: RunContext) -> RunOutcome | None:
    """Called once when an advance begins, before anything is written: an override of the
    schedule is audited; a cutoff that has passed turns the flag off (or, before the phase began,
    refuses to start it); an armed phase waits for its ``start_at``; a phase with ``preflight``
    runs every gate query once before its first step. Returns the outcome when the advance must
    end here, None to go on."""
    env, phase = ctx.env_name, ctx.phase
    schedule = schedule_of(ctx)
    now = ctx.clock.time()
    if ctx.override_window:
        moment = schedule.at(now)
        ctx.state.audit(env, "window_override", now, reason=ctx.override_window, would_wait=list(moment.why))
        ctx.out.line(f"  windows, freezes and start_at overridden for this run: {ctx.override_window}", "yellow")
    if schedule.cutoff is not None and now >= schedule.cutoff:
        when = show(schedule.cutoff, schedule.zone_name)
        if not _started(ctx):
            ctx.state.audit(env, "cutoff_passed", now, phase=phase.name, cutoff=when, started=False)
            return RunOutcome(
                "cutoff_passed",
                EXIT_HELD,
                f"phase {phase.name}'s cutoff {when} has passed; it was not started and nothing was changed. "
                "Move the cutoff (in the playbook or the environment file) to run it",
                env,
                phase.name,
            )
        reason = f"the phase's cutoff {when} came before phase {phase.name} completed"
        done = switch_off(OffPath.of(ctx), reason, automatic=True, step="cutoff")
        ctx.incident_report = done.report
        return done.outcome(env, phase.name, "cutoff", reason)
    if schedule.start_at is not None and now < schedule.start_at and not ctx.override_window:
        _armed(ctx, schedule.start_at, schedule.zone_name)
    first = ctx.state.get(env)
    if phase.preflight and (first.phase != phase.name or (first.step_index == 0 and first.status == IDLE)):
        report = run_preflight(ctx)
        now = ctx.clock.time()
        if not report.ok:
            ctx.state.audit(env, "preflight_failed", now, phase=phase.name, problems=report.problems)
            return RunOutcome(
                "preflight_failed",
                EXIT_USAGE,
                f"preflight of phase {phase.name} failed, nothing was changed: {'; '.join(report.problems)}",
                env,
                phase.name,
            )
        ctx.state.audit(env, "preflight_passed", now, phase=phase.name, checks=len(report.checks))
        ctx.out.line(f"  preflight: {len(report.checks)} gate queries answered as a ramp needs", "green")
    return None


def _armed(ctx: RunContext, start_at: float, zone_name: str | None) -> None:
    """Sleep until ``start_at``; nothing of the phase has run, so there is nothing to guard."""
    when = show(start_at, zone_name)
    ctx.state.audit(ctx.env_name, "armed", ctx.clock.time(), phase=ctx.phase.name, start_at=when)
    ctx.out.line(f"  armed: phase {ctx.phase.name} starts at {when}")
    while (now := ctx.clock.time()) < start_at:
        if ctx.state.get(ctx.env_name).status == ROLLED_BACK:
            raise RolledBackMeanwhile(f"environment {ctx.env_name} was rolled back while armed; stopping")
        ctx.out.waiting(f"armed: starts at {when} (in {format_duration(start_at - now)})")
        ctx.clock.sleep(min(start_at - now, max(ARMED_POLL_S, ctx.playbook.interval)))
    ctx.out.done_waiting()


def wait_for_window(ctx: RunContext, step: RampStep, label: str) -> Verdict | None:
    """Before a ramp writes its next percentage: wait until the schedule lets it move up. While
    it waits, the percentage in force (if any) stays guarded: its gates are evaluated every
    interval and recorded, and a breach fails the step (the flag goes off). The phase's cutoff
    ends the wait (:class:`CutoffPassed`, the flag goes off). Returns None to go on, or the
    verdict that failed while it waited (the step fails on it)."""
    schedule = schedule_of(ctx)
    if schedule.empty:
        return None
    check_cutoff(ctx)
    if ctx.override_window or schedule.at(ctx.clock.time()).allowed:
        return None
    env = ctx.env_name
    current = ctx.state.get(env)
    percent = current.percent if current.flag and current.percent else None
    interval = step.interval or ctx.playbook.interval
    gates = ctx.playbook.gates[step.gate]
    applied_at = next(
        (a["ts"] for a in reversed(ctx.state.audit_log(env, limit=200)) if a["action"] == "ramp"), ctx.clock.time()
    )
    counts = StepCounts(last_recorded(ctx, label, percent, applied_at)) if percent else StepCounts()
    moment = schedule.at(ctx.clock.time())
    opens = "not within a year" if moment.opens_at is None else show(moment.opens_at, schedule.zone_name)
    held = f"holding at {percent}%, guarded" if percent else "the flag stays as it is"
    ctx.state.audit(
        env, "window_wait", ctx.clock.time(), step=label, percent=percent, why=list(moment.why), opens=opens
    )
    ctx.state.update(env, ctx.clock.time(), reason=f"waiting to move up: {'; '.join(moment.why)}; next opens {opens}")
    ctx.out.line(f"  not moving up now: {'; '.join(moment.why)}; next opens {opens}; {held}", "yellow")
    while True:
        now = ctx.clock.time()
        if ctx.state.get(env).status == ROLLED_BACK:
            raise RolledBackMeanwhile(f"environment {env} was rolled back meanwhile; stopping")
        if percent:
            elapsed = now - applied_at
            verdict = measure(ctx, gates, cap=max(elapsed, interval), percent=percent, elapsed=elapsed, counts=counts)
            record(ctx, verdict, label, percent)
            if verdict.verdict == FAIL:  # the guard: a breach while waiting turns the flag off
                ctx.out.done_waiting()
                ctx.out.verdict(f"{label} at {percent}% (waiting for its window)", verdict)
                return verdict
        check_cutoff(ctx)
        moment = schedule.at(now)
        if moment.allowed:
            ctx.out.done_waiting()
            ctx.state.audit(env, "window_open", now, step=label, percent=percent)
            ctx.state.update(env, now, reason=None)
            return None
        until = moment.opens_at
        ctx.out.waiting(
            f"{label}: {'; '.join(moment.why)}; {held}; next opens "
            + (
                "not within a year"
                if until is None
                else f"{show(until, schedule.zone_name)} (in {format_duration(until - now)})"
            )
        )
        pause = interval if percent else max(interval, ARMED_POLL_S)
        ctx.clock.sleep(min(pause, until - now) if until is not None and until > now else pause)


__all__ = ["CutoffPassed", "before_phase", "wait_for_window"]
