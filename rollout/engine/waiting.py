"""What an advance checks, and waits for, before a phase runs: an override audited, its cutoff,
its start, its preflight. (A ramp waiting for a window is a decision of the reconciler: while it
waits, the percentage in force stays guarded; see :mod:`rollout.engine.steps.ramp`.) Nothing here
stands before a flag-off."""

from __future__ import annotations

from rollout.engine.calendar import CutoffPassed, schedule_of
from rollout.engine.context import RunContext
from rollout.engine.killswitch import OffPath, RolledBackMeanwhile, switch_off
from rollout.engine.outcome import RunOutcome
from rollout.engine.preflight import run_preflight
from rollout.engine.state import IDLE, ROLLED_BACK
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
    if armed_until(ctx) is not None:
        _armed(ctx, schedule.start_at or now, schedule.zone_name)
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


def armed_until(ctx: RunContext) -> float | None:
    """The phase's ``start_at`` while it has not come (and is not overridden), else None."""
    schedule = schedule_of(ctx)
    if schedule.start_at is not None and ctx.clock.time() < schedule.start_at and not ctx.override_window:
        return schedule.start_at
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


__all__ = ["CutoffPassed", "armed_until", "before_phase"]
