"""A run's schedule (its environment's and its phase's windows, freezes, start and cutoff) and the
cutoff check every hold makes. The decisions themselves are pure: :mod:`rollout.playbook.schedule`."""

from __future__ import annotations

from rollout.engine.context import RunContext
from rollout.playbook.schedule import Schedule, show
from rollout.util.errors import RolloutError


class CutoffPassed(RolloutError):
    """The phase's cutoff came before it completed: the step fails, so the flag goes off."""


def schedule_of(ctx: RunContext) -> Schedule:
    """The run's schedule: its environment file's keys and its phase's, combined (the strictest wins)."""
    return Schedule.of(ctx.resolved.env, ctx.phase)


def check_cutoff(ctx: RunContext) -> None:
    """Raise :class:`CutoffPassed` once the phase's cutoff has come (never in ``rollout gate``,
    which changes nothing). Raised inside a ramp or gate step, it fails the step and the flag goes
    off through the one flag-off path, as a breach does."""
    if ctx.read_only:
        return
    schedule = schedule_of(ctx)
    if schedule.cutoff is not None and ctx.clock.time() >= schedule.cutoff:
        raise CutoffPassed(
            f"the phase's cutoff {show(schedule.cutoff, schedule.zone_name)} came before phase "
            f"{ctx.phase.name} completed"
        )
