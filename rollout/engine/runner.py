"""Walk a phase's steps for one environment: plan, advance, resume, rollback, watch.

``advance`` takes the environment's writer lock, then runs the steps from where the state says it
stopped. Every step's start, end and outcome is recorded; a crash or Ctrl-C loses nothing, and the
next ``advance`` resumes at the step it was in (a ramp resumes at its recorded percentage and does
not apply it again). A failing check or gate turns the flag off at once through the kill switch.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rollout.checks.client import ServiceClient
from rollout.engine import drill
from rollout.engine.calendar import moving_up
from rollout.engine.context import Reporter, RunContext
from rollout.engine.driver import Driver, agent, terminal
from rollout.engine.flagview import flag_stands, restart_index, switched_off
from rollout.engine.killswitch import (
    Lines,
    RolledBackMeanwhile,
    _Silent,
    switch_off,
)
from rollout.engine.observe import measure, record
from rollout.engine.outcome import RunOutcome
from rollout.engine.project import Project, open_context, open_off_path
from rollout.engine.requests import clear_requests, cleared_since
from rollout.engine.state import (
    AGENT,
    AWAITING_APPROVAL,
    COMPLETED,
    HELD,
    IDLE,
    INTERRUPTED,
    ROLLED_BACK,
    RUNNING,
    EnvState,
    LeaseLost,
    StateRecords,
    step_at,
)
from rollout.engine.steps import AWAIT, DONE, KINDS, StepResult, Wait, describe, managed_values
from rollout.engine.steps import FAIL as STEP_FAIL
from rollout.engine.steps import configure as configure_step
from rollout.engine.waiting import before_phase
from rollout.engine.waves import breach_off, check_start, guard_exposure
from rollout.gates import FAIL, StepCounts
from rollout.playbook.environments import load_environment, shown_diff
from rollout.playbook.model import PromoteStep, RampStep, step_label
from rollout.promote import PromotionError, open_repo, plan_promotion
from rollout.targets import make_target, reported_values
from rollout.util.clock import Clock
from rollout.util.errors import EXIT_HELD, EXIT_OK, EXIT_ROLLED_BACK, ConfigError, RolloutError, StateError
from rollout.util.outcomes import ExitCode

__all__ = [
    "Configured",
    "Project",
    "RunOutcome",
    "advance",
    "check_order",
    "configure",
    "gate",
    "interrupted",
    "open_context",
    "plan_rows",
    "promotion_previews",
    "resume",
    "rollback",
    "watch",
]


def plan_rows(ctx: RunContext) -> list[dict[str, Any]]:
    """Each step of the phase with its state: done, current, or pending."""
    current = ctx.state.get(ctx.env_name)
    started = current.phase == ctx.phase.name
    rows = []
    for index, step in enumerate(ctx.phase.steps):
        if (current.status == COMPLETED and started) or (started and index < current.step_index):
            status = "done"
        elif started and index == current.step_index and current.status != IDLE:
            status = current.status
        else:
            status = "pending"
        what = describe(step, ctx.playbook)
        rows.append(
            {"index": index + 1, "step": step_label(step, index), "kind": step.kind, "status": status, "what": what}
        )
    return rows


def promotion_previews(ctx: RunContext, rows: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]] | str]:
    """For each promote step not done yet: the commits it would bring (read-only), or why it cannot."""
    previews: dict[str, list[tuple[str, str]] | str] = {}
    for row, step in zip(rows, ctx.phase.steps, strict=True):
        if not isinstance(step, PromoteStep) or row["status"] == "done":
            continue
        try:
            repo = open_repo(ctx.repo)
            previews[row["step"]] = plan_promotion(repo, step.source, step.target, step.remote).commits
        except PromotionError as exc:
            previews[row["step"]] = f"cannot promote: {exc}"
    return previews


def check_order(ctx: RunContext) -> None:
    """A phase starts only when the phase before it has completed (in every region, for a phase in
    waves); a region of a phase in waves begins its run only when its wave may start
    (:func:`rollout.engine.waves.check_start`: exit 3, naming what it waits for)."""
    previous = ctx.playbook.previous_phase(ctx.phase)
    if previous is not None:
        for env in previous.environments:
            before = ctx.state.get(env)
            if before.status != COMPLETED or before.phase != previous.name:
                raise StateError(
                    f"phase {ctx.phase.name} ({ctx.env_name}) needs phase {previous.name} "
                    f"({env}) completed first; it is {before.status}"
                )
    check_start(ctx)


def advance(ctx: RunContext) -> RunOutcome:
    """Run the phase's remaining steps; see the module docstring. A drill that died first has the
    flag put back as it found it (:func:`rollout.engine.drill.recover`)."""
    env = ctx.env_name
    _finish_dead_drill(ctx)
    done = finished(ctx)
    if done is not None:
        return done
    check_order(ctx)
    driving = agent(ctx.state, env, ctx.clock.time())
    current = ctx.state.get(env)
    if driving is not None and current.driver == AGENT:
        raise StateError(
            f"{env} is driven by {driving.words()} (its run goes on there); `rollout advance --env {env}` follows "
            f"it when that agent serves this project, and `rollout rollback --env {env} --reason ...` stops it"
        )
    note = ctx.state.acquire(env, ctx.clock.time())
    try:
        if note:
            ctx.state.audit(env, "lock_recovered", ctx.clock.time(), note=note)
            ctx.out.line(f"note: {note}; resuming", "yellow")
        return _advance_locked(ctx)
    finally:
        ctx.state.release(env)


def _finish_dead_drill(ctx: RunContext) -> None:
    """A drill that died between its flag-off and its restore: the flag back as it found it, under
    the writer lock, before anything else (not while an agent drives the environment: its run goes on)."""
    env = ctx.env_name
    if drill.unfinished(ctx.state, env) is None or agent(ctx.state, env, ctx.clock.time()) is not None:
        return
    note = ctx.state.acquire(env, ctx.clock.time())
    try:
        if note:
            ctx.state.audit(env, "lock_recovered", ctx.clock.time(), note=note)
        recovered = drill.recover(ctx)
        if recovered is not None:
            ctx.out.line(f"note: {recovered.message}", "bold yellow")
    finally:
        ctx.state.release(env)


def finished(ctx: RunContext) -> RunOutcome | None:
    """How an advance ends before it starts: the environment rolled back, or its phase complete
    (and whether the flag is still on); None: there is something to run."""
    env, phase = ctx.env_name, ctx.phase
    current = ctx.state.get(env)
    if current.status == ROLLED_BACK:
        return RunOutcome(
            ROLLED_BACK,
            EXIT_ROLLED_BACK,
            f"{env} is rolled back ({current.reason}); run `rollout resume --env {env}` to try again",
            env,
            phase.name,
        )
    if current.status == COMPLETED and current.phase == phase.name:
        if switched_off(phase, ctx.resolved.env, ctx.flags):
            return RunOutcome(
                "flag_off",
                EXIT_HELD,
                f"phase {phase.name} completed in {env} earlier, but the flag is off now in "
                f"{ctx.flags.describe()}; run `rollout resume --env {env} --reason ...` to ramp again",
                env,
                phase.name,
            )
        return RunOutcome(
            COMPLETED, EXIT_OK, f"phase {phase.name} is complete in {env}; nothing to do", env, phase.name
        )
    return None


def _advance_locked(ctx: RunContext) -> RunOutcome:
    early = before_phase(ctx)  # an override audited; a passed cutoff; start_at; preflight
    if early is not None:
        return early
    begin_run(ctx)
    while True:
        result = advance_tick(ctx)
        if isinstance(result, RunOutcome):
            return result
        ctx.clock.sleep(max(0.0, result.at - ctx.clock.time()))


def begin_run(ctx: RunContext, driver: str | None = None) -> None:
    """Mark the environment running and record how this run starts: a phase started (a new run id),
    or a run picked up again (the same run, or a new one after a rollback and ``resume``).
    ``driver`` is ``agent`` when the always-on agents drive it."""
    env, phase = ctx.env_name, ctx.phase
    moving_up(ctx)  # a ramp of this run moves up only when its windows and freezes let it
    guard_exposure(ctx)  # ... and, in a phase in waves, when the exposure budget does
    now = ctx.clock.time()
    current = ctx.state.get(env)
    ctx.resumed_from = current.status
    ctx.started_step = None
    ctx.watching = None
    if current.phase != phase.name:
        run_id = new_run_id()
        with ctx.state.tx() as db:
            ctx.state.update(
                env,
                now,
                db=db,
                phase=phase.name,
                step_index=0,
                ramp_index=0,
                ramp_applied=False,
                observe_started=None,
                status=RUNNING,
                reason=None,
                run_id=run_id,
                driver=driver,
            )
            ctx.state.audit(
                env, "phase_started", now, db=db, phase=phase.name, playbook=str(ctx.playbook_path), run=run_id
            )
        return
    run_id = current.run_id or new_run_id()
    with ctx.state.tx() as db:
        ctx.state.update(env, now, db=db, status=RUNNING, run_id=run_id, driver=driver)
        if current.status in (RUNNING, HELD, INTERRUPTED) or current.run_id != run_id:
            ctx.state.audit(
                env, "resumed", now, db=db, phase=phase.name, step_index=current.step_index, run=run_id, by=driver
            )


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def advance_tick(ctx: RunContext) -> RunOutcome | Wait:
    """One look at a run (after :func:`begin_run`): a step that runs to its end, or one look at an
    observing step. Returns how the run ended, or when to look again."""
    env, phase = ctx.env_name, ctx.phase
    total = len(phase.steps)
    current = ctx.state.get(env)
    if current.status == ROLLED_BACK:
        ctx.out.done_waiting()
        return RunOutcome(
            ROLLED_BACK,
            EXIT_ROLLED_BACK,
            f"environment {env} was rolled back meanwhile ({current.reason}); stopping",
            env,
            phase.name,
            step_label(phase.steps[current.step_index], current.step_index) if current.step_index < total else None,
        )
    if current.step_index >= total:
        return _complete(ctx)
    step = phase.steps[current.step_index]
    label = step_label(step, current.step_index)
    if ctx.started_step != current.step_index:
        ctx.started_step = current.step_index
        ctx.watching = None
        ctx.out.step(current.step_index, total, label, step.kind)
        ctx.state.audit(env, "step_started", ctx.clock.time(), step=label, kind=step.kind)
    kind = KINDS.get(step.kind)
    if kind is None:
        raise ConfigError(f"step {label}: kind {step.kind!r} is not available in this version of rollout")
    try:
        result = kind.step(ctx, step, label)
    except RolledBackMeanwhile as exc:
        ctx.out.done_waiting()
        return RunOutcome(ROLLED_BACK, EXIT_ROLLED_BACK, str(exc), env, phase.name, label)
    except LeaseLost:
        raise
    except Exception as exc:  # noqa: BLE001 - see cannot_continue
        result = cannot_continue(ctx, step, exc)
    if isinstance(result, Wait):
        return result
    ctx.watching = None
    ctx.results.append(result.record(label, step.kind))
    now = ctx.clock.time()
    if result.status == DONE:
        with ctx.state.tx() as db:  # the record of the step and the move past it, together
            ctx.state.audit(env, "step_done", now, db=db, step=label, detail=result.detail)
            ctx.state.update(
                env,
                now,
                db=db,
                step_index=current.step_index + 1,
                ramp_index=0,
                ramp_applied=False,
                observe_started=None,
            )
        return Wait(now)
    if result.status == AWAIT:
        ctx.state.update(env, now, status=AWAITING_APPROVAL, reason=result.detail)
        ctx.state.audit(env, "awaiting_approval", now, step=label, detail=result.detail)
        ctx.notify(
            "hold_timeout" if result.verdict is not None and not result.verdict.stop else "approval_needed",
            step=label,
            summary=f"{result.detail}; approve with `rollout advance --env {env} --approve`",
        )
        return RunOutcome(
            AWAITING_APPROVAL,
            EXIT_HELD,
            f"{label}: {result.detail} - approve with `rollout advance --env {env} --approve`",
            env,
            phase.name,
            label,
        )
    record = result.verdict.record() if result.verdict else {"summary": result.detail}
    done = breach_off(ctx, f"{label} failed: {result.detail}", label, record)
    return done.outcome(env, phase.name, label, f"{label} failed: {result.detail}")


def _complete(ctx: RunContext) -> RunOutcome:
    """The phase's last step is done: completed (never while a phase that turns the feature on has
    it off)."""
    env, phase = ctx.env_name, ctx.phase
    if switched_off(phase, ctx.resolved.env, ctx.flags):
        # never call a phase that turns the feature on complete while the feature is off
        ctx.state.update(env, ctx.clock.time(), status=HELD, reason="the flag is off")
        return RunOutcome(
            "flag_off",
            EXIT_HELD,
            f"phase {phase.name} reached its end in {env} but the flag is off in "
            f"{ctx.flags.describe()}; not marked completed. Run `rollout resume --env {env} "
            "--reason ...` to ramp again",
            env,
            phase.name,
        )
    now = ctx.clock.time()
    with ctx.state.tx() as db:
        ctx.state.update(env, now, db=db, status=COMPLETED, completed_at=now)
        ctx.state.audit(
            env,
            "phase_completed",
            now,
            db=db,
            phase=phase.name,
            commit=ctx.commit,
            bake_s=phase.bake,
        )
    ctx.notify("phase_completed", summary=f"phase {phase.name} completed", commit=ctx.commit)
    if phase is ctx.playbook.phases[-1]:
        ctx.notify("rollout_completed", summary=f"{ctx.playbook.name}: every phase completed", commit=ctx.commit)
    return RunOutcome(COMPLETED, EXIT_OK, f"phase {phase.name} completed in {env}", env, phase.name)


def cannot_continue(ctx: RunContext, step: Any, exc: Exception) -> StepResult:
    """A step that raised. While the feature may be on (a ramp or gate step, or the flag recorded
    on), the answer is a failed step, so the flag goes off: a ramp that cannot continue never
    leaves the feature on behind a crash. Otherwise (the flag off, a configuration problem in
    another step) the error goes to the person as before."""
    watching = step.kind in ("ramp", "gate") or bool(ctx.state.get(ctx.env_name).flag)
    if (
        not watching
        or isinstance(exc, KeyboardInterrupt)
        or (isinstance(exc, RolloutError) and step.kind not in ("ramp", "gate"))
    ):
        raise exc
    what = str(exc) if isinstance(exc, RolloutError) else f"{type(exc).__name__}: {exc}"
    return StepResult(STEP_FAIL, f"could not continue ({what})")


def interrupted(ctx: RunContext) -> RunOutcome:
    """An advance stopped by Ctrl-C: record it, and say where the flag stands and what to run next."""
    env = ctx.env_name
    now = ctx.clock.time()
    current = ctx.state.get(env)
    if current.status == RUNNING:
        ctx.state.update(env, now, status=INTERRUPTED)
    where = flag_stands(ctx.flags, env)
    ctx.state.audit(env, "interrupted", now, phase=current.phase, step_index=current.step_index, flag=where)
    hint = (
        f"run `rollout rollback --env {env} --reason ...` to stop it, or `rollout advance --env {env}` to continue"
        if ctx.flags.state()[0]
        else f"run `rollout advance --env {env}` to continue"
    )
    return RunOutcome(
        INTERRUPTED,
        ExitCode.INTERRUPTED,
        f"advance interrupted at step {current.step_index + 1}; {where}; {hint}",
        env,
        current.phase,
    )


#: the step kinds `rollout gate` runs: they measure and judge, they change nothing
CHECK_KINDS = ("smoke", "health", "scenario", "load", "gate")


def gate(ctx: RunContext) -> RunOutcome:
    """Run the phase's checks and gates without prompts and without changing anything, for CI.

    Exit codes as ``advance``: 0 all passed, 1 a check or gate failed, 3 a gate held. The verdicts
    are recorded against ``ctx.commit``; a run where everything passed is recorded as evidence
    (``gate_passed``) that a promotion can require.
    """
    env, phase = ctx.env_name, ctx.phase
    ctx.read_only = True
    steps = [(i, s) for i, s in enumerate(phase.steps) if s.kind in CHECK_KINDS]
    if not steps:
        raise ConfigError(f"phase {phase.name} has no check or gate steps to run")
    worst = DONE
    for index, step in steps:
        label = step_label(step, index)
        ctx.out.step(index, len(phase.steps), label, step.kind)
        result = KINDS[step.kind].run(ctx, step, label)
        ctx.results.append(result.record(label, step.kind))
        if result.status != DONE:
            held = result.verdict is not None and result.verdict.verdict != FAIL
            worst = "fail" if not held or worst == "fail" else "hold"
    now = ctx.clock.time()
    if worst == DONE:
        ctx.state.audit(env, "gate_passed", now, phase=phase.name, commit=ctx.commit)
        return RunOutcome(
            "passed",
            EXIT_OK,
            f"every check and gate of phase {phase.name} passed in {env}"
            + (f" at commit {ctx.commit[:12]}" if ctx.commit else ""),
            env,
            phase.name,
        )
    ctx.state.audit(
        env,
        "gate_failed" if worst == "fail" else "gate_held",
        now,
        phase=phase.name,
        commit=ctx.commit,
        failed=[r["step"] for r in ctx.results if r["status"] != DONE],
    )
    failed = "; ".join(f"{r['step']}: {r['detail']}" for r in ctx.results if r["status"] != DONE)
    if worst == "fail":
        return RunOutcome(
            "failed", EXIT_ROLLED_BACK, f"phase {phase.name} gates failed in {env}: {failed}", env, phase.name
        )
    return RunOutcome(HELD, EXIT_HELD, f"phase {phase.name} gates held in {env}: {failed}", env, phase.name)


def rollback(
    project: Project,
    env_name: str,
    reason: str,
    clock: Clock,
    who: str | None = None,
    out: Reporter | None = None,
    confirm_within: float = 5.0,
) -> RunOutcome:
    """Immediate disable: flag off, ``rolled_back``, recorded, confirmed with the target, report
    written, webhooks told (in the background: the outcome's ``pending`` waits for them). Never
    waits for an advance. Exit 0 only when the target confirmed the flag off; 1 when it did not,
    or when the flag write failed (a backend that cannot even be opened included)."""
    lines: Lines = out if out is not None else _Silent()
    with open_off_path(project, env_name, clock, lines, who=who, confirm_within=confirm_within) as kill:
        done = switch_off(kill.path, reason, automatic=False, who=who)
        env, flags, phase, notifier = kill.path.resolved.env, kill.path.flags, kill.phase, kill.notifier
    report, problem = done.report, done.problem
    details = {"incident_report": str(report) if report else None, "confirmed": problem is None}
    suffix = f"; incident report: {report}" if report else ""
    pending = notifier.drain if notifier is not None else None
    if done.off is None:
        return RunOutcome(
            "flag_off_failed",
            EXIT_ROLLED_BACK,
            f"the flag-off FAILED in {env_name} ({flags.describe()}): the service at {env.service_url} "
            f"has NOT confirmed the feature off and may still be ON: {problem}{suffix}",
            env_name,
            phase,
            details={**details, "problem": problem},
            pending=pending,
        )
    if problem:
        return RunOutcome(
            "unconfirmed",
            EXIT_ROLLED_BACK,
            f"the flag was written off ({flags.describe()}), but the service at {env.service_url} "
            f"has NOT confirmed the feature off: {problem}. The feature may still be ON: check that "
            f"the service reads {flags.describe()} and obeys {flags.flag_variable}{suffix}",
            env_name,
            phase,
            flag_off=done.off,
            details={**details, "problem": problem},
            pending=pending,
        )
    return RunOutcome(
        ROLLED_BACK,
        EXIT_OK,
        f"flag off in {env_name} ({flags.describe()}), confirmed by the service; reason: {reason}{suffix}",
        env_name,
        phase,
        flag_off=done.off,
        details=details,
        pending=pending,
    )


def resume(project: Project, env_name: str, reason: str, clock: Clock) -> RunOutcome:
    """Let a rolled-back environment advance again.

    The phase goes back to the last step at or before the one it stopped in that turns the flag on
    (its ramp, which restarts at the first percentage, or a configure step that enables it), so
    the next ``advance`` turns the feature on again through the same guarded write and gates.
    """
    playbook = project.playbook()
    state = project.state()
    try:
        current = state.get(env_name)
        phase = playbook.phase_for(env_name)
        env = load_environment(env_name, project.environments_dir)
        flags = project.flags(playbook, env)
        completed_but_off = (
            current.status == COMPLETED
            and phase is not None
            and current.phase == phase.name
            and switched_off(phase, env, flags)
        )
        if current.status != ROLLED_BACK and not completed_but_off:
            raise StateError(f"{env_name} is {current.status}, not rolled back; nothing to resume")
        holder = state.holder(env_name)
        if holder is not None:
            raise StateError(f"{env_name} is locked by {holder['owner']} (pid {holder['pid']}); try again later")
        step_index = current.step_index
        if phase is not None and current.phase == phase.name:
            step_index = restart_index(phase, env, flags.flag_variable, min(current.step_index, len(phase.steps)))
        now = clock.time()
        cleared = cleared_since(state, env_name, ("flag_off", "flag_off_failed"))
        left = clear_requests(state, env_name, now)  # a run that ended without a rollback leaves none either
        with state.tx() as db:
            state.update(
                env_name,
                now,
                db=db,
                status=HELD,
                reason=reason,
                step_index=step_index,
                ramp_index=0,
                ramp_applied=False,
                observe_started=None,
                run_id=None,
                driver=None,
            )
            state.audit(
                env_name,
                "resumed_after_rollback",
                now,
                db=db,
                reason=reason,
                step_index=step_index,
                stopped_at=current.step_index,
            )
    finally:
        state.close()
    what = ""
    if phase is not None and step_index < len(phase.steps):
        step = phase.steps[step_index]
        what = f" ({step_label(step, step_index)}"
        what += f", restarting at {step.percentages[0]}%)" if isinstance(step, RampStep) else ")"
    said = [
        f"{e['actor']}'s "
        + " and ".join(
            (["pause"] if e["detail"].get("paused") else [])
            + ([f"promotion ({e['detail']['promotion']})"] if e["detail"].get("promotion") else [])
        )
        for e in cleared
    ]
    if left:
        said.append("a pending " + " and ".join(k for k in ("paused", "promotion") if left.get(k)))
    note = f"; the rollback cleared {', '.join(said)}: the new run starts with none" if said else ""
    return RunOutcome(
        HELD,
        EXIT_OK,
        f"{env_name} may advance again from step {step_index + 1}{what}; the flag stays off until a step turns "
        f"it on{note}",
        env_name,
        current.phase,
    )


def watch(ctx: RunContext, max_evaluations: int | None = None, duration: float | None = None) -> RunOutcome:
    """Evaluate the watch gate every interval; a fail turns the flag off and stops."""
    policy = ctx.playbook.watch
    if policy is None:
        raise ConfigError(
            f"{ctx.playbook_path}: the playbook has no watch section (watch: {{gate: NAME, interval: "
            "1m}); rollout watch needs one"
        )
    gates = ctx.playbook.gates[policy.gate]
    started = ctx.clock.monotonic()
    counts = StepCounts()  # the metrics' limits count across this watch's evaluations
    count = 0
    while True:
        current = ctx.state.get(ctx.env_name)
        if current.status == ROLLED_BACK:
            return RunOutcome(
                ROLLED_BACK,
                EXIT_ROLLED_BACK,
                f"{ctx.env_name} is rolled back ({current.reason})",
                ctx.env_name,
                current.phase,
            )
        verdict = measure(ctx, gates, percent=current.percent, counts=counts)
        record(ctx, verdict, "watch", current.percent)
        ctx.out.verdict("watch", verdict)
        count += 1
        if verdict.verdict == FAIL:
            done = breach_off(ctx, f"watch: {verdict.summary}", "watch", verdict.record())
            return done.outcome(ctx.env_name, current.phase, "watch", f"gate failed: {verdict.summary}")
        if verdict.stop:  # a signal, or a provider past its error_limit: a person decides; the flag stays
            ctx.state.audit(ctx.env_name, "attention_needed", ctx.clock.time(), step="watch", detail=verdict.stop)
            ctx.notify("approval_needed", step="watch", summary=f"watch: {verdict.stop}")
            return RunOutcome(
                HELD, EXIT_HELD, f"watch stopped for a person: {verdict.stop}", ctx.env_name, current.phase
            )
        if (max_evaluations is not None and count >= max_evaluations) or (
            duration is not None and ctx.clock.monotonic() - started >= duration
        ):
            return RunOutcome(
                "watching", EXIT_OK, f"{count} evaluations, last {verdict.verdict}", ctx.env_name, current.phase
            )
        ctx.clock.sleep(policy.interval)


@dataclass(frozen=True)
class Configured:
    """What ``configure`` changed (or would change): ``(variable, from, to)`` with secrets as
    ``***``, and where it was written."""

    changes: list[tuple[str, str | None, str | None]]
    where: str
    written: bool


def configure(
    project: Project, env_name: str, overrides: Mapping[str, str], clock: Clock, dry_run: bool = False
) -> Configured:
    """Apply ``env_name``'s variables (``overrides`` on top) through its flag backend: every variable
    to an env file, the flag and the percentage to another backend. Guarded as a ramp's write is (a
    rolled-back environment refuses), recorded in the audit log; ``dry_run`` writes nothing."""
    playbook = project.playbook()
    env = load_environment(env_name, project.environments_dir)
    project.learn_secrets(playbook, env)
    flags = project.flags(playbook, env)
    service: ServiceClient | None = None
    try:
        resolved = managed_values(flags, project.resolve(env, overrides=overrides))
        service = ServiceClient(env.service_url, resolved.admin_token, timeout=3.0)
        # against what the service reports it runs, when the backend only knows what rollout wrote
        changes = shown_diff(resolved, reported_values(flags, make_target(playbook, service, flags)))
        if dry_run:
            return Configured(changes, flags.describe(), False)
        state = project.state()
        try:
            configure_step.apply(flags, state, env_name, clock, resolved, changes, source="rollout configure")
        finally:
            state.close()
        return Configured(changes, flags.describe(), True)
    finally:
        if service is not None:
            service.close()
        flags.close()


# --- a person's hand on a running step: pause, continue, promote ----------------------------------------


def pause(project: Project, env_name: str, reason: str, clock: Clock, who: str | None = None) -> RunOutcome:
    """Hold ``env_name``'s ramp (or gate step) at its percentage past its hold, until ``continue``.
    The gates keep watching: a guardrail breach still turns the flag off. Never waits for an advance;
    the advance running in another terminal sees it at its next evaluation."""
    return _hand(project, env_name, clock, who, "paused", reason, paused=True)


def unpause(project: Project, env_name: str, reason: str, clock: Clock, who: str | None = None) -> RunOutcome:
    """``rollout continue``: the paused step goes on deciding as its gates say."""
    return _hand(project, env_name, clock, who, "continued", reason, paused=False)


def promote_now(
    project: Project, env_name: str, reason: str, clock: Clock, who: str | None = None, full: bool = False
) -> RunOutcome:
    """Accept the running step now (the next percentage, or the next step); with ``full``, the flag
    on for everyone now and the ramp done: an emergency, said loudly in the audit and the report.
    The gates still judge the evaluation that applies it: a guardrail breach wins."""
    return _hand(project, env_name, clock, who, "promotion_requested", reason, promote="full" if full else "step")


def _driving(state: StateRecords, current: EnvState, now: float) -> Driver | None:
    """Who would apply a request on ``current``'s run now: a terminal's advance, or an agent driving
    a run handed to it (an agent only guarding a run does not move it)."""
    found = terminal(state, current.name)
    if found is None and current.driver == AGENT and current.status == RUNNING:
        found = agent(state, current.name, now)
    return found


def _promotion_at(kind: str, current: EnvState) -> str:
    # tied to the step it was asked at: a step that ends first does not hand it to the next one
    return f"{kind}@{step_at(current)}"


def _hand(
    project: Project, env_name: str, clock: Clock, who: str | None, action: str, reason: str, **control: Any
) -> RunOutcome:
    state = project.state()
    try:
        current = state.get(env_name)
        verb = {"paused": "pause", "continued": "continue", "promotion_requested": "promote"}[action]
        if current.status == ROLLED_BACK:
            raise StateError(f"{env_name} is rolled back ({current.reason}); nothing runs to {verb}")
        now = clock.time()
        driver = _driving(state, current, now)
        pending = state.control(env_name)
        clearing = action == "continued" and pending.paused
        if driver is None and not clearing:
            raise StateError(
                f"nothing is running in {env_name} to {verb} (it is {current.status}; no advance and no agent "
                f"drives it): a request is applied by the run it is made in, so none is stored. Start one with "
                f"`rollout advance --env {env_name}`"
            )
        if "promote" in control:
            control["promote"] = _promotion_at(control["promote"], current)
        if pending.run_id != current.run_id:  # what is left of another run is not this run's
            control = {"paused": False, "promote": None, **control}
        with state.tx() as db:
            state.set_control(env_name, now, db=db, run_id=current.run_id, **control)
            state.audit(
                env_name,
                action,
                now,
                db=db,
                who=who,
                reason=reason,
                run=current.run_id,
                driver=driver.words() if driver else None,
                **control,
            )
    finally:
        state.close()
    if driver is None:
        return RunOutcome(
            action,
            EXIT_OK,
            f"{env_name}: the pause is cleared (no advance is running there now)",
            env_name,
            current.phase,
        )
    where = f"{current.percent}%" if current.flag and current.percent is not None else "its current step"
    said = {
        "paused": f"{env_name} paused at {where}: the step holds there past its hold; guardrails still turn the flag "
        f"off; `rollout continue --env {env_name} --reason ...` to go on",
        "continued": f"{env_name} continues: its gates decide again",
        "promotion_requested": (
            f"{env_name}: PROMOTION TO 100% NOW requested; {driver.words()} applies it at its next evaluation"
            if str(control.get("promote")).startswith("full")
            else f"{env_name}: the step at {where} is accepted at the next evaluation of {driver.words()}"
        ),
    }[action]
    return RunOutcome(action, EXIT_OK, said, env_name, current.phase)
