"""Waves across regions: where each region of a waved phase stands, when a wave may start, the
exposure budget a ramp write must keep, and what a breach in one region turns off.

Every answer is read from the regions' records (their state rows and audits), never from the
process asking, so a terminal's ``advance --env REGION``, one process driving every region
(``advance --phase``, :mod:`rollout.engine.fanout`) and the agents (each region leased on its own)
decide alike. The rules (``docs/engine.md`` says them for people):

- A region **holds** while its flag is on at the percentage its ramp last wrote and its run is
  ``running`` or ``completed``; it has held for as long as that write is old. A write moves it on
  and its hold starts again; a rollback ends it.
- **Ordering**: a region of wave *k* begins its run only once every region of wave *k-1* has held
  (at whatever percentage) for wave *k*'s ``after``. Waves overlap: the ones before keep ramping.
- **The exposure budget** (``max_exposure``): while a region of an earlier wave is unproven (its
  ramp is not done, or its last percentage has not held for the ``after`` of the wave after it), a
  ramp write that would take the share of customers exposed across all regions (percentage x
  weight over the total weight; a write announced and not yet recorded counts) past the budget
  waits, guarded as a ramp waiting for its window is (:class:`~rollout.engine.context.Held`). It is
  checked again in the transaction that announces the write, so two regions writing at once
  cannot both take the last of it. The first wave has nothing before it: the budget never holds it.
- **Failure policy**: ``this_region`` turns off the failing region's flag only; ``all_regions``
  turns it off first, at once, then every other region's, each through the one flag-off path and
  each audited as caused by the failing region. Under ``all_regions`` no region of the phase starts
  while one is rolled back.

Nothing here stands before a flag-off: the waits only ever hold a write that moves a ramp up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from rollout.engine.context import Held, MayNotMoveUp, RunContext
from rollout.engine.flagwrites import interrupted
from rollout.engine.killswitch import OffPath, SwitchedOff, switch_off, write_incident
from rollout.engine.project import open_off_path
from rollout.engine.state import (
    AWAITING_APPROVAL,
    COMPLETED,
    INTERRUPTED,
    ROLLED_BACK,
    RUNNING,
    EnvState,
    StateRecords,
)
from rollout.playbook.model import Phase, Playbook, RampStep
from rollout.util.errors import EXIT_HELD, StateError
from rollout.util.units import format_duration

#: a budget compared with shares computed in floating point
_EPSILON = 1e-9


class WaveNotYet(StateError):
    """A region whose wave may not start yet: the run is refused (exit 3, held), naming what it
    waits for; :attr:`at` is when it may (None: not known, it waits for something to happen)."""

    exit_code = EXIT_HELD

    def __init__(self, why: str, at: float | None) -> None:
        super().__init__(why)
        self.at = at


@dataclass(frozen=True)
class Region:
    """One region of a waved phase as its record says it stands."""

    name: str
    #: its wave, from 0
    wave: int
    #: its share of the phase's customers (its weight over the total), 0 to 1
    share: float
    status: str
    #: its run of this phase has begun
    started: bool
    #: the percentage in force (the flag on), or None (off)
    percent: int | None
    #: the share of its customers exposed, 0 to 1 (a write announced and not recorded yet counts)
    exposed: float
    #: since when it has held its percentage (None: it does not hold)
    held_since: float | None
    #: its ramp has written its last percentage (or the phase went past it)
    ramp_done: bool

    def words(self, now: float) -> str:
        """Where it stands, as the sentence naming what a wave waits for says it."""
        if self.held_since is not None:
            return f"{self.name} has held {self.percent}% for {format_duration(max(0.0, now - self.held_since))}"
        if self.status == ROLLED_BACK:
            return f"{self.name} is rolled back"
        if not self.started:
            return f"{self.name} has not started"
        if self.status in (AWAITING_APPROVAL, INTERRUPTED):
            return f"{self.name} is {self.status.replace('_', ' ')}"
        return f"{self.name} has no percentage on yet"


def ramp_of(phase: Phase) -> tuple[int, RampStep]:
    """The phase's ramp step (a waved phase has one) and where it is in the phase."""
    return next((i, s) for i, s in enumerate(phase.steps) if isinstance(s, RampStep))


def standing(state: StateRecords, phase: Phase) -> dict[str, Region]:
    """Every region of ``phase`` as its record says it stands (a few small reads per region)."""
    names = phase.regions
    rows = state.rows(names)
    total = sum(phase.weight(name) for name in names)
    index, ramp = ramp_of(phase)
    found = {}
    for name in names:
        row = rows[name]
        started = row.phase == phase.name
        percent = (100 if row.percent is None else row.percent) if row.flag else None
        exposed = (percent or 0) / 100
        left = interrupted(state, name)
        if left is not None and left["detail"].get("flag"):
            announced = left["detail"].get("percent")
            exposed = max(exposed, (100 if announced is None else announced) / 100)
        held_since = None
        if started and row.flag and row.status in (RUNNING, COMPLETED):
            held_since = _last_write(state, name)
        last = len(ramp.percentages) - 1
        ramp_done = started and (
            row.status == COMPLETED
            or row.step_index > index
            or (row.step_index == index and (row.ramp_index > last or (row.ramp_index == last and row.ramp_applied)))
        )
        found[name] = Region(
            name,
            phase.wave_of(name),
            phase.weight(name) / total,
            row.status,
            started,
            percent,
            exposed,
            held_since,
            ramp_done,
        )
    return found


def _last_write(state: StateRecords, region: str) -> float | None:
    """When ``region``'s ramp last wrote its flag on (None: a flag-off came after it, or none)."""
    last = {
        r["action"]: float(r["ts"])
        for r in state.execute(
            "SELECT action, MAX(ts) AS ts FROM audit WHERE environment = ? AND action IN ('ramp', 'flag_off') "
            "GROUP BY action",
            (region,),
        ).fetchall()
    }
    ramp = last.get("ramp")
    return None if ramp is None or last.get("flag_off", 0.0) > ramp else ramp


def exposure(found: dict[str, Region]) -> float:
    """The share of the phase's customers exposed across its regions, 0 to 1."""
    return sum(r.exposed * r.share for r in found.values())


def _after(phase: Phase, wave: int) -> float:
    """How long the wave before ``wave`` holds before ``wave`` starts."""
    return (phase.waves or [])[wave].after or 0.0


def _pct(share: float) -> str:
    return f"{share * 100:.3g}%"


# --- ordering -------------------------------------------------------------------------------------


def may_start(phase: Phase, found: dict[str, Region], region: str, now: float) -> WaveNotYet | None:
    """Why ``region`` may not begin its run now (with when it may), or None: it may."""
    if phase.failure_policy == "all_regions":
        failed = [r.name for r in found.values() if r.status == ROLLED_BACK and r.name != region]
        if failed:
            return WaveNotYet(
                f"{region} does not start: {', '.join(failed)} of phase {phase.name} is rolled back and on_failure "
                f"is all_regions (a breach stops every region); run `rollout resume --env {failed[0]}` first",
                None,
            )
    wave = phase.wave_of(region)
    if wave == 0:
        return None
    after = _after(phase, wave)
    waiting, ready = [], []
    for name in (phase.waves or [])[wave - 1].environments:
        r = found[name]
        if r.held_since is None:
            waiting.append(r.words(now))
        elif r.held_since + after > now:
            waiting.append(f"{r.words(now)} ({format_duration(r.held_since + after - now)} to go)")
            ready.append(r.held_since + after)
    if not waiting:
        return None
    at = max(ready) if len(ready) == len(waiting) else None
    return WaveNotYet(
        f"{region} is in wave {wave + 1} of phase {phase.name}: it starts once every region of wave {wave} has "
        f"held its percentage for {format_duration(after)}; {'; '.join(waiting)}",
        at,
    )


def begins_run(row: EnvState, phase: Phase) -> bool:
    """Does an advance of ``row``'s region begin a run (the phase's first, or one after ``resume``)?"""
    return row.phase != phase.name or row.run_id is None


def check_start(ctx: RunContext) -> None:
    """Raise :class:`WaveNotYet` when ``ctx``'s region may not begin its run yet (its wave waits);
    a run already going is never stopped by its wave."""
    phase = ctx.phase
    if phase.waves is None or not begins_run(ctx.state.get(ctx.env_name), phase):
        return
    said = may_start(phase, standing(ctx.state, phase), ctx.env_name, ctx.clock.time())
    if said is not None:
        raise said


# --- the exposure budget --------------------------------------------------------------------------


def _proven(phase: Phase, r: Region, now: float) -> bool:
    return r.ramp_done and r.held_since is not None and r.held_since + _after(phase, r.wave + 1) <= now


def over_budget(phase: Phase, found: dict[str, Region], region: str, percent: int, now: float) -> Held | None:
    """Why writing ``percent`` in ``region`` must wait for the budget (with when it may), or None."""
    limit = phase.max_exposure
    wave = phase.wave_of(region)
    if limit is None or wave == 0:
        return None
    unproven = [r for r in found.values() if r.wave < wave and not _proven(phase, r, now)]
    if not unproven:
        return None
    me = found[region]
    now_exposed = exposure(found)
    would = now_exposed - me.exposed * me.share + percent / 100 * me.share
    if would <= limit + _EPSILON:
        return None
    names = ", ".join(r.name for r in unproven)
    has = "has" if len(unproven) == 1 else "have"
    after = max(_after(phase, r.wave + 1) for r in unproven)
    counted = [r.held_since + _after(phase, r.wave + 1) for r in unproven if r.ramp_done and r.held_since]
    return Held(
        (
            f"exposure budget: {percent}% in {region} would expose {_pct(would)} of the phase's customers across "
            f"its regions, over max_exposure {_pct(limit)} (now {_pct(now_exposed)}), while {names} {has} not held "
            f"the last percentage of its ramp for {format_duration(after)}",
        ),
        max(counted) if len(counted) == len(unproven) else None,
        kind="exposure",
        until=f"once {names} {has} held the last percentage for {format_duration(after)}",
    )


def _next_write(row: EnvState, phase: Phase) -> int | None:
    """The percentage ``row``'s ramp writes next (None: not at its ramp, or nothing left to write)."""
    index, ramp = ramp_of(phase)
    if row.phase != phase.name or row.step_index != index:
        return None
    position = row.ramp_index + (1 if row.ramp_applied else 0)
    return ramp.percentages[position] if position < len(ramp.percentages) else None


def guard_exposure(ctx: RunContext) -> None:
    """Teach ``ctx`` its phase's exposure budget (after its schedule, :func:`~rollout.engine.calendar.moving_up`):
    a ramp of this region moves up only when its windows let it *and* the budget does, and each
    write is checked again in the transaction that announces it."""
    phase = ctx.phase
    if phase.waves is None or phase.max_exposure is None or ctx.read_only:
        return
    windows = ctx.schedule

    def held(now: float) -> Held | None:
        said = windows(now) if windows is not None else None
        if said is not None:
            return said
        percent = _next_write(ctx.state.get(ctx.env_name), phase)
        return None if percent is None else over_budget(phase, standing(ctx.state, phase), ctx.env_name, percent, now)

    def check(db: Any, percent: int) -> None:
        ctx.state.serialize(db, f"exposure {ctx.playbook.name} {phase.name}")
        said = over_budget(phase, standing(ctx.state, phase), ctx.env_name, percent, ctx.clock.time())
        if said is not None:
            raise MayNotMoveUp(said.words())

    ctx.schedule = held
    ctx.write_check = check


# --- the failure policy ---------------------------------------------------------------------------


def wave_note(phase: Phase, region: str, caused_by: str | None = None) -> dict[str, Any] | None:
    """What a flag-off in ``region`` records of its wave (nothing read: it costs the flag-off nothing)."""
    if phase.waves is None:
        return None
    wave = phase.wave_of(region)
    return {
        "phase": phase.name,
        "region": region,
        "wave": wave + 1,
        "waves": len(phase.waves),
        "regions": phase.waves[wave].environments,
        "policy": phase.failure_policy,
        "max_exposure": phase.max_exposure,
        "caused_by": caused_by,
    }


def with_wave(phase: Phase, region: str, verdict: dict[str, Any]) -> dict[str, Any]:
    """``verdict`` (a flag-off's record of why) with its region's wave, for the incident report."""
    note = wave_note(phase, region)
    return verdict if note is None else {**verdict, "wave": note}


def breach_off(ctx: RunContext, reason: str, step: str, verdict: dict[str, Any]) -> SwitchedOff:
    """The automatic flag-off of ``ctx``'s environment for a breach at ``step`` (``verdict``: the
    record of why), then what its phase's ``on_failure`` does next (:func:`after_breach`)."""
    done = switch_off(
        OffPath.of(ctx), reason, automatic=True, verdict=with_wave(ctx.phase, ctx.env_name, verdict), step=step
    )
    ctx.incident_report = done.report
    after_breach(ctx, reason, step, done.off.previous_percent if done.off else None)
    return done


def after_breach(ctx: RunContext, reason: str, step: str | None, previous_percent: int | None = None) -> list[str]:
    """Once the failing region's own flag is off (:func:`~rollout.engine.killswitch.switch_off`;
    ``previous_percent``: what it was on for): what its phase's ``on_failure`` does next.
    ``all_regions`` turns every other region's flag off, all at once (a thread each), each through the one
    flag-off path and audited as caused by this region; ``this_region`` changes nothing more.
    Either way the failing region's audit says what was done (``wave_failure``, with the exposure
    in force when it failed), and its incident report is written again to say it too. Returns the
    regions turned off. Never raises: the failing region's flag is off already, and what follows
    must not hide that."""
    phase = ctx.phase
    if phase.waves is None or ctx.read_only:
        return []
    policy, failing = phase.failure_policy, ctx.env_name
    turned: list[str] = []
    problems: list[str] = []
    try:
        found = standing(ctx.state, phase)
        before = exposure(found) + found[failing].share * (previous_percent or 0) / 100
    except Exception as exc:  # noqa: BLE001 - a record that cannot be read must not keep the others on
        problems.append(f"the regions' records could not be read: {exc}")
        before = None
    if policy == "all_regions":
        why = f"on_failure all_regions: {failing} failed: {reason}"
        for region in phase.regions:
            if region == failing:
                continue
            try:
                row = ctx.state.get(region)
            except Exception:  # noqa: BLE001 - a record that cannot be read: turn it off all the same
                row = None
            if row is not None and not row.flag and (row.status == ROLLED_BACK or row.phase != phase.name):
                continue  # off already, or never started (it will not start now: see may_start)
            turned.append(region)
        said: dict[str, str | None] = {}

        def turn_off(region: str) -> None:
            try:
                said[region] = _turn_off(ctx, region, why, step, before)
            except Exception as exc:  # noqa: BLE001 - one region that cannot be reached never stops the others
                said[region] = str(exc) or type(exc).__name__

        # every other region at once: none waits for another's confirmation or report
        workers = [threading.Thread(target=turn_off, args=(r,), name=f"rollout-off-{r}") for r in turned]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        problems += [f"{region}: {said[region]}" for region in turned if said.get(region)]
    try:
        ctx.state.audit(
            failing,
            "wave_failure",
            ctx.clock.time(),
            phase=phase.name,
            wave=phase.wave_of(failing) + 1,
            policy=policy,
            failed=failing,
            turned_off=[failing, *turned],
            exposure=None if before is None else round(before, 6),
            max_exposure=phase.max_exposure,
            problems=problems,
        )
    except Exception as exc:  # noqa: BLE001 - the record of the policy must not hide that the flags are off
        ctx.out.line(f"warning: the wave policy's record could not be written: {exc}", "bold red")
    if policy == "all_regions":
        ctx.out.line(
            f"on_failure all_regions: {failing} failed; turned off {', '.join(turned) or 'no other region (none on)'}"
            + (f"; PROBLEMS: {'; '.join(problems)}" if problems else ""),
            "bold red",
        )
    else:
        ctx.out.line(f"on_failure this_region: only {failing} was turned off; the waves after it wait", "yellow")
    ctx.incident_report = write_incident(OffPath.of(ctx)) or ctx.incident_report  # now with what the policy did
    return turned


def _turn_off(ctx: RunContext, region: str, why: str, step: str | None, before: float | None) -> str | None:
    """Turn ``region``'s flag off through the one flag-off path; returns the problem, or None."""
    phase = ctx.phase
    if ctx.project is None:
        return "this run knows no project to reach the region through"
    notifier = ctx.notifier

    def notify(event: str, **details: Any) -> None:
        if notifier is not None:
            notifier.fire(event, region, phase=phase.name, **details)

    note = wave_note(phase, region, caused_by=ctx.env_name) or {}
    verdict = {"summary": why, "wave": {**note, "exposure": None if before is None else round(before, 6)}}
    # a store of its own, closed with it: this thread's connection must not outlive the thread (an agent lives long)
    with open_off_path(ctx.project, region, ctx.clock, ctx.out, notify=notify, playbook=ctx.playbook) as kill:
        done = switch_off(kill.path, why, automatic=True, verdict=verdict, step=step)
    return done.problem


# --- what people read -----------------------------------------------------------------------------


def wave_view(playbook: Playbook | None, state: StateRecords, region: str, now: float) -> dict[str, Any] | None:
    """``region``'s wave for ``status``, ``history``, the dashboard and the incident report: which
    wave, its regions, every region's standing, the exposure in force against the budget, why it
    waits (if it does), which regions failed and what the policy does. None: not a waved phase."""
    phase = playbook.phase_for(region) if playbook is not None else None
    if phase is None or phase.waves is None:
        return None
    found = standing(state, phase)
    me = found[region]
    row = state.get(region)
    waiting = may_start(phase, found, region, now) if begins_run(row, phase) and row.status != ROLLED_BACK else None
    percent = _next_write(row, phase)
    budget = over_budget(phase, found, region, percent, now) if percent is not None else None
    budget_applies = any(r.wave < me.wave and not _proven(phase, r, now) for r in found.values())
    return {
        "phase": phase.name,
        "wave": me.wave + 1,
        "waves": len(phase.waves),
        "regions": phase.waves[me.wave].environments,
        "after_s": _after(phase, me.wave) if me.wave else None,
        "all_waves": [wave.environments for wave in phase.waves],
        "share": round(me.share, 6),
        "exposure": round(exposure(found), 6),
        "max_exposure": phase.max_exposure,
        "budget_in_force": bool(phase.max_exposure is not None and budget_applies),
        "policy": phase.failure_policy,
        "waiting": str(waiting) if waiting is not None else (budget.words() if budget is not None else None),
        "failed": [r.name for r in found.values() if r.status == ROLLED_BACK],
        "regions_standing": {
            r.name: {
                "wave": r.wave + 1,
                "status": r.status,
                "percent": r.percent,
                "share": round(r.share, 6),
                "held_s": None if r.held_since is None else round(max(0.0, now - r.held_since), 1),
                "ramp_done": r.ramp_done,
            }
            for r in found.values()
        },
    }


def wave_words(view: dict[str, Any]) -> str:
    """A wave view in one line: ``wave 2/2 (us-east, ap-south); exposure 17.5% of max 30%``."""
    said = f"wave {view['wave']}/{view['waves']} ({', '.join(view['regions'])}); exposure {_pct(view['exposure'])}"
    if view["max_exposure"] is not None:
        said += f" of max {_pct(view['max_exposure'])}"
        if view["wave"] > 1 and not view["budget_in_force"]:
            said += " (lifted: the waves before it have held their last percentage)"
    if view["failed"]:
        said += f"; failed: {', '.join(view['failed'])} (on_failure {view['policy']})"
    if view["waiting"]:
        said += f"; waits: {view['waiting']}"
    return said
