"""Every region of a phase in waves driven from one process (``rollout advance --phase NAME``).

The reconciler makes it possible: a region's run is a series of looks (:func:`runner.advance_tick`),
each returning how the run ended or when to look again, so one process interleaves the regions'
looks and sleeps until the earliest of them is due. A region whose wave may not start yet is looked
at again when it may (:class:`~rollout.engine.waves.WaveNotYet`); a ramp held back by the exposure
budget waits guarded, like one waiting for its window. Each region keeps its own writer lock, its
own record and its own flag, exactly as a terminal's ``advance --env REGION`` would.

The drive ends when every region's run has ended, or when what is left can only wait for
something this process will not do (a region its wave waits on rolled back, or stopped for a
person).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rollout.engine import handoff
from rollout.engine.calendar import shown_time
from rollout.engine.context import Reporter, RunContext
from rollout.engine.driver import agent
from rollout.engine.follow import Follower, outcome_of
from rollout.engine.outcome import RunOutcome
from rollout.engine.project import Project, open_context
from rollout.engine.runner import advance_tick, begin_run, check_order, finished, interrupted
from rollout.engine.state import AGENT, StateRecords
from rollout.engine.steps import Wait
from rollout.engine.waiting import armed_until, before_phase
from rollout.engine.waves import WaveNotYet
from rollout.gates import Verdict
from rollout.playbook.model import Phase
from rollout.util.clock import Clock
from rollout.util.errors import EXIT_HELD, EXIT_OK, EXIT_ROLLED_BACK, EXIT_USAGE, ConfigError, RolloutError, StateError
from rollout.util.outcomes import ExitCode, Status


class RegionReporter:
    """A region's lines in a terminal driving several: each said under the region's name."""

    def __init__(self, inner: Reporter, region: str) -> None:
        self.inner, self.region = inner, region

    def step(self, index: int, total: int, label: str, kind: str) -> None:
        self.inner.step(index, total, f"{label} in {self.region}", kind)

    def line(self, text: str, style: str = "") -> None:
        self.inner.line(f"[{self.region}] {text.strip()}", style)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.inner.check(f"[{self.region}] {name}", ok, detail)

    def verdict(self, label: str, verdict: Verdict) -> None:
        self.inner.verdict(f"[{self.region}] {label}", verdict)

    def progress(self, total: int, description: str) -> contextlib.AbstractContextManager[Callable[[int], None]]:
        return self.inner.progress(total, f"[{self.region}] {description}")

    def waiting(self, text: str) -> None:
        self.inner.waiting(f"[{self.region}] {text}")

    def done_waiting(self) -> None:
        self.inner.done_waiting()


@dataclass
class _Region:
    name: str
    ctx: RunContext
    #: when its next look is due (the clock's time)
    due: float = 0.0
    begun: bool = False
    outcome: RunOutcome | None = None
    #: why it waits to begin, said once per reason; and whether only something outside can end it
    waiting: str | None = None
    stuck: bool = False
    locked: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)


def waved_phase(project: Project, name: str) -> Phase:
    """The phase ``name`` of the project's playbook (a ConfigError naming the known ones)."""
    playbook = project.playbook()
    phase = next((p for p in playbook.phases if p.name == name), None)
    if phase is None:
        known = ", ".join(p.name for p in playbook.phases)
        raise ConfigError(f"{project.playbook_path}: no phase {name!r} (phases: {known})")
    return phase


@contextlib.contextmanager
def region_contexts(
    project: Project, phase: Phase, clock: Clock, out: Reporter, state: StateRecords, **options: Any
) -> Iterator[dict[str, RunContext]]:
    """A run's context for every region of ``phase`` (one state store shared), closed afterwards."""
    with contextlib.ExitStack() as stack:
        contexts = {
            region: stack.enter_context(
                open_context(project, region, clock, RegionReporter(out, region), state=state, drain=False, **options)
            )
            for region in phase.environments
        }
        yield contexts


def advance_phase(
    project: Project,
    phase: Phase,
    clock: Clock,
    out: Reporter,
    *,
    approve: bool = False,
    override_evidence: str | None = None,
    override_window: str | None = None,
    before_start: Callable[[dict[str, RunContext]], None] | None = None,
) -> RunOutcome:
    """Drive every region of ``phase`` from this process, interleaving their looks (see the module
    docstring). ``before_start`` is called with the regions' contexts once they are open and locked,
    before anything is changed (the CLI asks its confirmation there). Returns one outcome for the
    phase: its ``details["regions"]`` holds each region's."""
    state = project.state()
    try:
        with region_contexts(
            project,
            phase,
            clock,
            out,
            state,
            approve=approve,
            override_evidence=override_evidence,
            override_window=override_window,
        ) as contexts:
            regions = [_Region(name, ctx) for name, ctx in contexts.items()]
            try:
                _lock(regions, clock)
                if before_start is not None:
                    before_start(contexts)
                _drive(regions, clock)
            except KeyboardInterrupt:
                for r in regions:
                    if r.begun and r.outcome is None:
                        r.outcome = interrupted(r.ctx)
                    elif r.outcome is None:
                        r.outcome = RunOutcome(
                            "not_started", ExitCode.INTERRUPTED, "not started (interrupted)", r.name, phase.name
                        )
            finally:
                for r in regions:
                    if r.locked:
                        state.release(r.name)
            drained = [r.ctx.notifier.drain for r in regions if r.ctx.notifier is not None]
    finally:
        state.close()
    return summary(phase, [r.name for r in regions], {r.name: r.outcome for r in regions if r.outcome}, drained)


def _lock(regions: list[_Region], clock: Clock) -> None:
    """Take every region's writer lock before anything runs (one held elsewhere refuses the drive)."""
    for r in regions:
        ctx = r.ctx
        current = ctx.state.get(r.name)
        driving = agent(ctx.state, r.name, clock.time())
        if driving is not None and current.driver == AGENT:
            raise StateError(
                f"{r.name} is driven by {driving.words()} (its run goes on there); `rollout rollback --env "
                f"{r.name} --reason ...` stops it"
            )
        note = ctx.state.acquire(r.name, clock.time())
        r.locked = True
        if note:
            ctx.state.audit(r.name, "lock_recovered", clock.time(), note=note)
            ctx.out.line(f"note: {note}; resuming", "yellow")


def _drive(regions: list[_Region], clock: Clock) -> None:
    for r in regions:
        r.outcome = finished(r.ctx)
    while True:
        open_regions = [r for r in regions if r.outcome is None]
        if not open_regions:
            return
        now = clock.time()
        due = sorted((r for r in open_regions if r.due <= now), key=lambda r: (r.ctx.phase.wave_of(r.name), r.due))
        if not due:
            if all(not r.begun and r.stuck for r in open_regions):
                for r in open_regions:  # nothing this process does can let them start
                    r.outcome = RunOutcome("waiting", EXIT_HELD, r.waiting or "waiting", r.name, r.ctx.phase.name)
                return
            clock.sleep(max(0.0, min(r.due for r in open_regions) - now))
            continue
        moved = False
        for r in due:
            was_running = r.begun
            _look(r, clock)
            moved = moved or was_running or r.begun
        if moved:  # a run went on: a region waiting on it may start now
            for r in open_regions:
                if not r.begun and r.stuck and r.outcome is None:
                    r.due = clock.time()


def _look(r: _Region, clock: Clock) -> None:
    """One look at a region: begin its run when its wave may, else one look at the run."""
    ctx = r.ctx
    if not r.begun:
        r.outcome = finished(ctx)  # rolled back (by a person) while it waited for its wave, say
        if r.outcome is not None:
            return
        try:
            check_order(ctx)
        except WaveNotYet as exc:
            if r.waiting != str(exc):
                ctx.state.audit(r.name, "wave_wait", clock.time(), phase=ctx.phase.name, why=str(exc))
                ctx.out.line(f"waiting for its wave: {exc}", "yellow")
            # it starts at a known time, or when a region it waits on moves (see _drive)
            r.waiting, r.stuck = str(exc), exc.at is None
            r.due = exc.at if exc.at is not None else float("inf")
            return
        except StateError as exc:
            r.outcome = RunOutcome("refused", exc.exit_code, str(exc), r.name, ctx.phase.name)
            return
        start = armed_until(ctx)
        if start is not None:
            if r.waiting != "armed":
                r.waiting = "armed"
                ctx.state.audit(r.name, "armed", clock.time(), phase=ctx.phase.name, start_at=start)
                ctx.out.line(f"armed: phase {ctx.phase.name} starts at {shown_time(ctx, start)}")
            r.due = start
            return
        try:
            early = before_phase(ctx)
        except RolloutError as exc:  # its preflight cannot run, a secret is missing: this region stops here
            r.outcome = RunOutcome("refused", exc.exit_code, str(exc), r.name, ctx.phase.name)
            return
        if early is not None:
            r.outcome = early
            return
        begin_run(ctx)
        r.begun, r.waiting, r.stuck = True, None, False
    try:
        result: RunOutcome | Wait = advance_tick(ctx)
    except RolloutError as exc:  # as a terminal's advance would end (its message, its exit code)
        result = RunOutcome("error", exc.exit_code, str(exc), r.name, ctx.phase.name)
    if isinstance(result, RunOutcome):
        r.outcome = result
        ctx.out.done_waiting()
        ctx.out.line(f"{result.status}: {result.message}", "bold")
    else:
        r.due = result.at


#: the phase's exit code is its regions' most serious one, in this order
_SERIOUS = (ExitCode.INTERRUPTED, EXIT_ROLLED_BACK, EXIT_USAGE, EXIT_HELD)


def follow_regions(
    state: StateRecords,
    phase: Phase,
    requests: dict[str, tuple[int, Follower]],
    clock: Clock,
    not_taken_within: float,
    poll: float = 0.2,
) -> dict[str, RunOutcome]:
    """Follow the runs of several regions handed to the agents, all at once (the same lines a
    terminal driving them prints, each under its region), until every one has ended. A request no
    agent takes within ``not_taken_within`` seconds is withdrawn and that region reported as not run."""
    started = clock.monotonic()
    ended: dict[str, RunOutcome] = {}
    while len(ended) < len(requests):
        for region, (request_id, follower) in requests.items():
            if region in ended:
                continue
            follower.poll()
            request = handoff.get(state, request_id)
            not_run = RunOutcome(
                "not_taken",
                EXIT_USAGE,
                f"no agent took the run of {region} within {not_taken_within:g}s (it was withdrawn); run "
                f"`rollout advance --env {region}`",
                region,
                phase.name,
            )
            if request is None:
                ended[region] = not_run
            elif request.finished_at is not None and request.outcome is not None:
                follower.poll()
                ended[region] = outcome_of(request.outcome) or not_run
            elif (
                request.taken_by is None
                and clock.monotonic() - started > not_taken_within
                and handoff.cancel(state, request_id, clock.time())
            ):
                ended[region] = not_run
        if len(ended) < len(requests):
            clock.sleep(poll)
    return ended


def summary(
    phase: Phase, regions: list[str], outcomes: dict[str, RunOutcome], drained: Sequence[Callable[..., None]] = ()
) -> RunOutcome:
    """One outcome for a phase driven in several regions: the most serious exit code of theirs
    (130, 1, 2, 3, then 0), each region's outcome in ``details["regions"]``."""
    codes = {o.exit_code for o in outcomes.values()}
    code = next((c for c in _SERIOUS if c in codes), max(codes - {EXIT_OK}, default=EXIT_OK))
    statuses: dict[int, str] = {
        EXIT_OK: Status.COMPLETED,
        EXIT_ROLLED_BACK: Status.ROLLED_BACK,
        EXIT_USAGE: "refused",
        EXIT_HELD: Status.HELD,
        ExitCode.INTERRUPTED: Status.INTERRUPTED,
    }
    status = statuses.get(code, "failed")
    said = "; ".join(f"{name}: {o.status} ({o.message})" for name, o in outcomes.items())

    def drain() -> None:
        for d in drained:
            d()

    return RunOutcome(
        status,
        code,
        f"phase {phase.name} in {len(regions)} regions: {said}",
        ", ".join(regions),
        phase.name,
        details={"regions": {name: o.as_dict() for name, o in outcomes.items()}},
        pending=drain,
    )
