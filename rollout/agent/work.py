"""One environment an agent holds: its lease, its run's context, and one look at a time.

Every look runs under the lease's fence (:func:`rollout.engine.state.fenced`): each write it makes
is checked against the lease's token in its own transaction, so a look that wakes up after another
agent took over writes nothing. ``drive`` runs the handed-over advance with the engine's own
:func:`~rollout.engine.runner.advance_tick`; ``guard`` does the same for a dead terminal's run but
never moves it up; ``bake`` evaluates the playbook's watch gate after the phase completed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from rollout.agent.log import AgentLog, EnvReporter
from rollout.agent.ownership import BAKE, DRIVE
from rollout.engine import handoff
from rollout.engine.calendar import shown_time
from rollout.engine.context import Held
from rollout.engine.leases import Lease, LeaseRow
from rollout.engine.observe import Watching, evaluate, watching
from rollout.engine.outcome import RunOutcome
from rollout.engine.project import Project, open_context
from rollout.engine.reconcile import Act, Look, decide_observation
from rollout.engine.runner import advance_tick, begin_run, check_order, finished
from rollout.engine.state import AGENT, COMPLETED, ROLLED_BACK, StateRecords, fenced, step_at
from rollout.engine.steps import Wait
from rollout.engine.waiting import armed_until, before_phase
from rollout.engine.waves import WaveNotYet, breach_off
from rollout.playbook.model import GateStep, RampStep, step_label
from rollout.util.clock import Clock
from rollout.util.errors import StateError

#: what a guarded run says when it would move up
GUARDING = "guarding a run whose terminal stopped: it moves up only when someone runs `rollout advance`"


@dataclass
class Work:
    """An environment held by this agent."""

    project: Project
    environment: str
    mode: str
    lease: Lease
    #: the lease it replaced (None: never leased), for the take-over's audit entry
    replaced: LeaseRow | None
    #: the request being driven (drive mode)
    request: handoff.RunRequest | None = None
    ctx: Any = None
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    #: when the next look is due (the clock's time), and when the last one was due
    due: float = 0.0
    #: set when the work is over (released, lost, finished): the agent lets it go
    over: str | None = None
    bake_watch: Watching | None = None
    begun: bool = False
    armed_said: bool = False
    wave_said: bool = False
    #: let go when the look under way ends: (why, release the lease, record it)
    let_go: tuple[str, bool, bool] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (str(self.project.state_url or self.project.state_path), self.environment)


def look(work: Work, state: StateRecords, clock: Clock, log: AgentLog) -> float | None:
    """One look at ``work`` under its lease; returns when the next is due (None: the work is over,
    :attr:`Work.over` says why). Raises :class:`~rollout.engine.state.LeaseLost` when the lease is gone."""
    with fenced(work.lease):
        if work.ctx is None:
            _open(work, state, clock, log)
        if work.mode == BAKE:
            return _bake(work, clock)
        return _run(work, clock)


def _open(work: Work, state: StateRecords, clock: Clock, log: AgentLog) -> None:
    """The run's context, kept for the work's life; and the take-over said in the audit."""
    redactor = work.project.redactor
    work.ctx = work.stack.enter_context(
        open_context(work.project, work.environment, clock, EnvReporter(log, work.environment, redactor), state=state)
    )
    work.ctx.agent = work.lease.owner
    row = state.get(work.environment)
    previous = work.replaced
    why = (
        "never driven by an agent before"
        if previous is None
        else "its previous owner released it"
        if previous.expires_at == 0
        else "its previous owner's lease ran out (it stopped renewing)"
    )
    state.audit(
        work.environment,
        "agent_took_over",
        clock.time(),
        mode=work.mode,
        token=work.lease.token,
        previous_owner=previous.owner if previous else None,
        previous_token=previous.token if previous else None,
        why=why,
        at=step_at(row),
        step=_step_name(work, row.step_index),
        percent=row.percent if row.flag else None,
    )
    log.event(
        "took_over",
        f"took {work.environment} ({work.mode}, token {work.lease.token}) at {_step_name(work, row.step_index)}; "
        + why
        + (f" ({previous.owner})" if previous else ""),
        work.environment,
        redactor,
        mode=work.mode,
        token=work.lease.token,
    )


def _step_name(work: Work, index: int) -> str | None:
    steps = work.ctx.phase.steps if work.ctx is not None else []
    return step_label(steps[index], index) if index < len(steps) else None


def _run(work: Work, clock: Clock) -> float | None:
    ctx = work.ctx
    state: StateRecords = ctx.state
    if not work.begun:
        if work.mode == DRIVE:
            begun = _begin_drive(work, clock)
            if begun is None:
                return None
            if begun is not True:  # armed: nothing runs before the phase's start_at
                return begun
        else:  # guard: the run is not this agent's to move; it is watched where it stands
            ctx.schedule = lambda now: Held((GUARDING,))
            ctx.started_step = state.get(work.environment).step_index
            if not _observing(work):
                work.over = "nothing to guard at this step"
                return None
        work.begun = True
    result = advance_tick(ctx)
    if isinstance(result, Wait):
        return result.at
    _ended(work, result, clock)
    if work.mode == DRIVE and result.status == COMPLETED and ctx.phase.bake is not None:
        work.mode, work.over = BAKE, None
        return clock.time()
    return None


def _begin_drive(work: Work, clock: Clock) -> float | bool | None:
    """Take (or adopt) the run request and begin the run (True); None when the run ends before it
    begins; the time to look again when the phase is armed (its ``start_at`` has not come)."""
    ctx, state = work.ctx, work.ctx.state
    request = handoff.running(state, work.environment)
    if request is not None and request.taken_by != work.lease.owner:
        handoff.adopt(state, request.id, work.lease.owner, clock.time())
    if request is None:
        for waiting in handoff.pending(state, [work.environment]):
            if handoff.take(state, waiting.id, work.lease.owner, clock.time()):
                request = waiting
                break
    work.request = request
    options = request.options if request is not None else {}
    ctx.approve = bool(options.get("approve"))
    ctx.override_evidence = options.get("override_evidence")
    before = finished(ctx)
    if before is None:
        try:
            check_order(ctx)
        except WaveNotYet as exc:  # its wave waits for the one before: look again when it may start
            if not work.wave_said:
                work.wave_said = True
                ctx.state.audit(work.environment, "wave_wait", clock.time(), phase=ctx.phase.name, why=str(exc))
                ctx.out.line(f"  waiting for its wave: {exc}")
            return exc.at if exc.at is not None else clock.time() + ctx.playbook.interval
        except StateError as exc:
            before = RunOutcome("refused", exc.exit_code, str(exc), work.environment, ctx.phase.name)
    if before is None:
        start = armed_until(ctx)
        if start is not None:
            if not work.armed_said:
                work.armed_said = True
                ctx.state.audit(work.environment, "armed", clock.time(), phase=ctx.phase.name, start_at=start)
                ctx.out.line(f"  armed: phase {ctx.phase.name} starts at {shown_time(ctx, start)}")
            return start
        before = before_phase(ctx)
    if before is not None:
        _ended(work, before, clock)
        return None
    begin_run(ctx, driver=AGENT)
    return True


def _observing(work: Work) -> bool:
    row = work.ctx.state.get(work.environment)
    steps = work.ctx.phase.steps
    return row.step_index < len(steps) and isinstance(steps[row.step_index], (RampStep, GateStep))


def _ended(work: Work, outcome: RunOutcome, clock: Clock) -> None:
    """The run ended: its request gets the outcome (the following terminal prints it)."""
    work.over = f"{outcome.status}: {outcome.message}"
    if work.request is not None:
        handoff.finish(work.ctx.state, work.request.id, outcome.as_dict(), clock.time())
        work.request = None
    work.ctx.state.audit(
        work.environment, "agent_run_ended", clock.time(), status=outcome.status, exit_code=outcome.exit_code
    )


def _bake(work: Work, clock: Clock) -> float | None:
    """One evaluation of the watch gate after the phase completed; a fail turns the flag off."""
    ctx = work.ctx
    row = ctx.state.get(work.environment)
    bake = ctx.phase.bake
    policy = ctx.playbook.watch
    if row.status == ROLLED_BACK:
        work.over = "rolled back"
        return None
    if row.status != COMPLETED or policy is None or bake is None or row.completed_at is None:
        work.over = "nothing to bake"
        return None
    now = clock.time()
    if now >= row.completed_at + bake:
        ctx.state.audit(work.environment, "bake_completed", now, bake_s=bake)
        work.over = "bake time over"
        return None
    if work.bake_watch is None:
        look = Look(float("inf"), 0.0, policy.interval)
        work.bake_watch = watching(ctx, policy.gate, "bake", row.percent, row.completed_at, look)
    if now - row.completed_at < policy.interval:  # nothing measured since the phase completed yet
        return row.completed_at + policy.interval
    verdict = evaluate(ctx, work.bake_watch)
    decision = decide_observation(row, work.bake_watch.started_at, work.bake_watch.look, verdict, None, now)
    if decision.act == Act.TURN_OFF:
        breach_off(ctx, f"bake: {verdict.summary}", "bake", verdict.record())
        work.over = "the flag was turned off during the bake"
        return None
    if decision.act == Act.STOP:
        ctx.state.audit(work.environment, "attention_needed", now, step="bake", detail=verdict.stop)
        ctx.notify("approval_needed", step="bake", summary=f"bake: {verdict.stop}")
    return now + policy.interval


def close(work: Work) -> None:
    """Let go of the run's context (its connections, clients, notifier)."""
    try:
        work.stack.close()
    except Exception:  # noqa: BLE001 - a context that cannot close cleanly must not stop the agent
        pass
