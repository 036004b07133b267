"""The engine's decision, pure: given an environment's recorded state, the latest verdict, what people
asked and the time, what to do next and when to look again.

Argo Rollouts' ``reconcileAnalysisRun`` and ``calculateNextReconcileTime`` are the model. Nothing here
sleeps, measures or writes: the step that asks (:mod:`rollout.engine.steps.ramp`,
:mod:`rollout.engine.steps.gate`, the agent's bake) carries the decision out, and the caller (a
terminal's ``advance`` or the agent's scheduler) comes back at :attr:`Decision.next_at`. The same
function decides for both, so what a foreground run does is what the agent does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rollout.engine.state import Control, EnvState, step_at
from rollout.gates import FAIL, PASS, Verdict


class Act(StrEnum):
    """What an observing step does next."""

    #: the ramp has passed its last percentage: the step is done
    DONE = "done"
    #: write the ramp's percentage (not applied yet at this position)
    WRITE = "write"
    #: evaluate the gates now (then decide again with the verdict)
    MEASURE = "measure"
    #: a guardrail failed: the flag goes off
    TURN_OFF = "turn_off"
    #: a signal failed or a provider erred past its limit: a person decides, the flag stays
    STOP = "stop"
    #: a person accepted the step now (``rollout promote``)
    PROMOTE = "promote"
    #: a person sent the ramp to 100 % now (``rollout promote --full``)
    PROMOTE_FULL = "promote_full"
    #: held long enough and passing: the next percentage (or the next step)
    ACCEPT = "accept"
    #: held past ``hold + max_hold`` without a pass: the step's ``on_hold_timeout``
    TIMEOUT = "timeout"
    #: nothing to do yet: look again at ``next_at``
    WAIT = "wait"


@dataclass(frozen=True)
class Look:
    """How an observing step watches: its hold, its extra hold, its interval."""

    hold: float
    max_hold: float
    interval: float


@dataclass(frozen=True)
class Decision:
    act: Act
    #: why, for people (a waiting decision: what it waits for)
    reason: str = ""
    #: when to look again (None: at once)
    next_at: float | None = None
    #: the percentage to write (:attr:`Act.WRITE`)
    percent: int | None = None
    #: a promotion asked at a step that has ended since: dropped (recorded), not applied
    drop_promotion: bool = False
    #: the step waits for a window to move up (it still watches and still turns the flag off)
    held_by_schedule: str | None = None


def decide_ramp(
    row: EnvState,
    percentages: list[int],
    look: Look,
    verdict: Verdict | None,
    control: Control,
    now: float,
    may_move_up: str | None = None,
) -> Decision:
    """The ramp's next act at ``row``'s position. ``verdict`` None: not measured yet at this look.
    ``may_move_up`` is why the ramp may not move up now (a window closed, a freeze), or None."""
    if row.ramp_index >= len(percentages):
        return Decision(Act.DONE, f"reached {percentages[-1]}%")
    percent = percentages[row.ramp_index]
    if not row.ramp_applied:
        if may_move_up is not None:  # a write moves up: it waits for its window
            return Decision(Act.WAIT, may_move_up, next_at=now + look.interval, held_by_schedule=may_move_up)
        return Decision(Act.WRITE, f"the flag on for {percent}% of customers", percent=percent)
    return decide_observation(row, row.observe_started or now, look, verdict, control, now, may_move_up)


def decide_observation(
    row: EnvState,
    started_at: float,
    look: Look,
    verdict: Verdict | None,
    control: Control | None,
    now: float,
    may_move_up: str | None = None,
) -> Decision:
    """An observing step's next act, ``started_at`` being when its percentage was applied (a gate
    step: when it began). ``control`` None: people's requests do not apply (``rollout gate`` in CI).

    Order matters and is the safety argument: a failing guardrail turns the flag off whatever was
    asked (paused, promoted, outside a window); a stop for a person comes next; only then a
    person's request; only then the hold's own clock."""
    if verdict is None:
        return Decision(Act.MEASURE)
    elapsed = now - started_at
    later = now + look.interval
    if verdict.verdict == FAIL:
        return Decision(Act.TURN_OFF, verdict.summary)
    if verdict.stop:
        return Decision(Act.STOP, verdict.stop)
    drop = False
    if control is not None and control.promote and control.belongs_to(row):
        if control.promote_at == step_at(row):
            act = Act.PROMOTE_FULL if control.promote_kind == "full" else Act.PROMOTE
            return Decision(act, "accepted now by a person (rollout promote)")
        drop = True
    if control is not None and control.paused and control.belongs_to(row):
        return Decision(Act.WAIT, "paused by a person", next_at=later, drop_promotion=drop)
    if elapsed >= look.hold:
        if verdict.verdict == PASS:
            if may_move_up is None:
                return Decision(Act.ACCEPT, verdict.summary, drop_promotion=drop)
            return Decision(Act.WAIT, may_move_up, next_at=later, drop_promotion=drop, held_by_schedule=may_move_up)
        if elapsed >= look.hold + look.max_hold:
            return Decision(Act.TIMEOUT, f"held too long: {verdict.summary}", drop_promotion=drop)
    return Decision(Act.WAIT, verdict.summary, next_at=later, drop_promotion=drop)
