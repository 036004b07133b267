"""A run's schedule (its environment's and its phase's windows, freezes, start and cutoff) and the
cutoff check every hold makes. The decisions themselves are pure: :mod:`rollout.playbook.schedule`."""

from __future__ import annotations

from rollout.engine.context import Held, RunContext
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


def moving_up(ctx: RunContext) -> None:
    """Teach ``ctx`` its schedule: a ramp of this run moves up only when its windows, freezes and
    start let it (``--override-window`` lifts them for the run)."""
    schedule = schedule_of(ctx)
    if schedule.empty or ctx.override_window:
        return

    def held(now: float) -> Held | None:
        moment = schedule.at(now)
        return None if moment.allowed else Held(tuple(moment.why), moment.opens_at)

    ctx.schedule = held


def shown_time(ctx: RunContext, at: float) -> str:
    """``at`` as the run's schedule shows times (its zone): ``Mon 2026-01-12 09:00 CET``."""
    schedule = schedule_of(ctx)
    return show(at, schedule.zone_name)
