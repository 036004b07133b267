"""Walk a phase's steps for one environment: plan, advance, resume, rollback, watch.

``advance`` takes the environment's writer lock, then runs the steps from where the state says it
stopped. Every step's start, end and outcome is recorded; a crash or Ctrl-C loses nothing, and the
next ``advance`` resumes at the step it was in (a ramp resumes at its recorded percentage and does
not apply it again). A failing check or gate turns the flag off at once through the kill switch.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rollout.checks.service_api import SandboxControl, ServiceClient
from rollout.util.clock import Clock
from rollout.engine.context import Reporter, RunContext
from rollout.engine.killswitch import FlagOff, RolledBackMeanwhile, UnreachableFlags, kill
from rollout.engine.observe import measure, record
from rollout.engine.pgstate import PgStateStore
from rollout.engine.state import (
    AWAITING_APPROVAL, COMPLETED, HELD, IDLE, INTERRUPTED, ROLLED_BACK, RUNNING, EnvState, StateRecords, StateStore, actor,
    pid_alive,
)
from rollout.engine.steps import AWAIT, DONE, KINDS, StepResult, describe, wait_service_applied
from rollout.engine.steps import FAIL as STEP_FAIL
from rollout.playbook.environments import (
    Environment,
    Resolved,
    is_secret_name,
    load_environment,
    reference_value,
    resolve,
)
from rollout.util.errors import EXIT_HELD, EXIT_OK, EXIT_ROLLED_BACK, ConfigError, RolloutError, StateError
from rollout.flags import FlagBackend, FlagStore, is_on, make_flags
from rollout.providers import MetricSources
from rollout.incident.report import collect, write_report
from rollout.notify import Notifier
from rollout.promote import PromotionError, open_repo, plan_promotion
from rollout.util.redact import Redactor
from rollout.targets import make_target
from rollout.util.units import format_duration
from rollout.gates import FAIL
from rollout.playbook.load import load_playbook
from rollout.playbook.model import ConfigureStep, Phase, Playbook, RampStep, step_label
from rollout.util.yamlfile import secret_field


@dataclass
class RunOutcome:
    """How a command ended, for its exit code and --json."""

    status: str
    exit_code: int
    message: str
    environment: str
    phase: str | None = None
    step: str | None = None
    flag_off: FlagOff | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: what is still going after the answer (webhook deliveries): the CLI calls it once it has printed
    pending: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        data = {"status": self.status, "exit_code": self.exit_code, "message": self.message,
                "environment": self.environment, "phase": self.phase, "step": self.step, **self.details}
        if self.flag_off:
            data["flag_off_at"] = self.flag_off.at
        return data


@dataclass
class Project:
    """Where things are: the playbook, the environments folder, the state database."""

    playbook_path: Path
    environments_dir: Path
    state_path: Path
    secrets_file: Path | None = None
    repo_path: Path = Path(".")
    #: ``postgresql://...``: the state lives there; ``state_path``'s folder still holds local files
    #: (incident reports, the flag backends' records)
    state_url: str | None = None
    #: the command's one redactor: every secret resolved through this project is taught to it, and
    #: everything written (console, state, reports, webhooks, the CLI's error line) passes through it
    redactor: Redactor = field(default_factory=Redactor)

    def playbook(self) -> Playbook:
        return load_playbook(self.playbook_path)

    def state(self, read_only: bool = False) -> StateRecords:
        """The state store (SQLite, or PostgreSQL for a ``state_url``); ``read_only`` never creates a
        SQLite file (a missing one reads as empty). What it writes passes through :attr:`redactor`."""
        if self.state_url:
            return PgStateStore(self.state_url, self.redactor)
        return StateStore(self.state_path, create=not read_only, redactor=self.redactor)

    @property
    def incidents_dir(self) -> Path:
        return self.state_path.parent / "incidents"

    def secret(self, raw: str, env: Environment) -> str:
        """A playbook's ``${REFERENCE}`` resolved from the process environment, then the secrets
        file; each value found is taught to :attr:`redactor` before anyone can print it."""
        return reference_value(raw, f"{self.playbook_path}", self.secrets_file or env.secrets_file,
                               found=lambda _name, value: self.redactor.learn([value]))

    def resolve(self, env: Environment, overrides: Mapping[str, str] | None = None) -> Resolved:
        """``env`` resolved (see :func:`~rollout.environments.resolve`), its secrets taught to :attr:`redactor`."""
        return resolve(env, overrides=overrides, secrets_file=self.secrets_file).sharing(self.redactor)

    def learn_secrets(self, playbook: Playbook, env: Environment) -> None:
        """Resolve every reference of ``playbook`` that is set (tokens, databases, headers, the flag
        command's arguments), so :attr:`redactor` knows each value before anything is written. A
        reference that is not set is skipped here: it is reported where it is used, and a missing
        webhook token must never stop a rollback."""
        def walk(value: Any, path: tuple[Any, ...]) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    walk(item, (*path, key))
            elif isinstance(value, list):
                for index, item in enumerate(value):
                    walk(item, (*path, index))
            elif isinstance(value, str) and "${" in value and secret_field(path):
                try:
                    self.secret(value, env)
                except ConfigError:
                    pass

        walk(playbook.model_dump(), ())

    def flags(self, playbook: Playbook, env: Environment) -> FlagBackend:
        """The environment's flag backend, as the playbook names it."""
        return make_flags(playbook.flag, env, self.state_path.parent, lambda raw: self.secret(raw, env))


@contextmanager
def open_context(project: Project, env_name: str, clock: Clock, out: Reporter, *,
                 approve: bool = False, read_only: bool = False, drain: bool = True) -> Iterator[RunContext]:
    """Load and resolve everything a run of ``env_name`` needs; close it afterwards. With ``drain``
    False the webhook deliveries still going are left to the caller (``ctx.notifier.drain()``
    after it has printed its answer)."""
    playbook = project.playbook()
    phase = playbook.phase_for(env_name)
    if phase is None:
        known = ", ".join(p.environment for p in playbook.phases)
        raise ConfigError(f"{project.playbook_path}: no phase runs in environment {env_name!r} (phases run in: {known})")
    env = load_environment(env_name, project.environments_dir)
    resolved = project.resolve(env)
    # every reference is resolved now, so the redactor knows each value before anything is printed
    project.learn_secrets(playbook, env)
    state = project.state(read_only=read_only)
    service = ServiceClient(env.service_url, resolved.admin_token)
    sandbox = SandboxControl(env.sandbox_url, resolved.sandbox_token) if env.sandbox_url and resolved.sandbox_token \
        else None

    def secret(raw: str) -> str:
        return project.secret(raw, env)

    for step in phase.steps:  # a check's header that is not set stops the run before it starts
        for check in getattr(step, "checks", None) or []:
            for value in getattr(check, "headers", {}).values():
                secret(value)
    flags = make_flags(playbook.flag, env, project.state_path.parent, secret)
    target = make_target(playbook, service, flags)
    metrics = MetricSources.build(playbook, service, secret)
    notifier = Notifier(playbook.notify, secret, resolved.redactor(), project.state) if playbook.notify else None
    ctx = RunContext(playbook, project.playbook_path, phase, resolved, state, flags, service, sandbox, clock, out,
                     approve=approve, incidents_dir=project.incidents_dir, repo=project.repo_path,
                     commit=state.get(env_name).commit_sha, metrics=metrics, secret=secret, target=target,
                     notifier=notifier)
    try:
        yield ctx
    finally:
        if notifier is not None and drain:
            notifier.drain()
        metrics.close()
        flags.close()
        service.close()
        if sandbox is not None:
            sandbox.close()
        state.close()


def plan_rows(ctx: RunContext) -> list[dict[str, Any]]:
    """Each step of the phase with its state: done, current, or pending."""
    current = ctx.state.get(ctx.env_name)
    started = current.phase == ctx.phase.name
    rows = []
    for index, step in enumerate(ctx.phase.steps):
        if current.status == COMPLETED and started:
            status = "done"
        elif started and index < current.step_index:
            status = "done"
        elif started and index == current.step_index and current.status != IDLE:
            status = current.status
        else:
            status = "pending"
        what = describe(step, ctx.playbook)
        rows.append({"index": index + 1, "step": step_label(step, index), "kind": step.kind, "status": status,
                     "what": what})
    return rows


def promotion_previews(ctx: RunContext, rows: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]] | str]:
    """For each promote step not done yet: the commits it would bring (read-only), or why it cannot."""
    previews: dict[str, list[tuple[str, str]] | str] = {}
    for row, step in zip(rows, ctx.phase.steps, strict=True):
        if step.kind != "promote" or row["status"] == "done":
            continue
        try:
            repo = open_repo(ctx.repo)
            previews[row["step"]] = plan_promotion(repo, step.source, step.target, step.remote).commits
        except PromotionError as exc:
            previews[row["step"]] = f"cannot promote: {exc}"
    return previews


def check_order(ctx: RunContext) -> None:
    """A phase starts only when the phase before it has completed."""
    previous = ctx.playbook.previous_phase(ctx.phase)
    if previous is None:
        return
    before = ctx.state.get(previous.environment)
    if before.status != COMPLETED or before.phase != previous.name:
        raise StateError(f"phase {ctx.phase.name} ({ctx.env_name}) needs phase {previous.name} "
                         f"({previous.environment}) completed first; it is {before.status}")


def advance(ctx: RunContext) -> RunOutcome:
    """Run the phase's remaining steps; see the module docstring."""
    env, phase = ctx.env_name, ctx.phase
    current = ctx.state.get(env)
    if current.status == ROLLED_BACK:
        return RunOutcome(ROLLED_BACK, EXIT_ROLLED_BACK,
                          f"{env} is rolled back ({current.reason}); run `rollout resume --env {env}` to try again",
                          env, phase.name)
    if current.status == COMPLETED and current.phase == phase.name:
        if switched_off(phase, ctx.resolved.env, ctx.flags):
            return RunOutcome("flag_off", EXIT_HELD,
                              f"phase {phase.name} completed in {env} earlier, but the flag is off now in "
                              f"{ctx.flags.describe()}; run `rollout resume --env {env} --reason ...` to ramp again",
                              env, phase.name)
        return RunOutcome(COMPLETED, EXIT_OK, f"phase {phase.name} is complete in {env}; nothing to do", env,
                          phase.name)
    check_order(ctx)
    note = ctx.state.acquire(env, ctx.clock.time())
    try:
        if note:
            ctx.state.audit(env, "lock_recovered", ctx.clock.time(), note=note)
            ctx.out.line(f"note: {note}; resuming", "yellow")
        return _advance_locked(ctx)
    finally:
        ctx.state.release(env)


def _advance_locked(ctx: RunContext) -> RunOutcome:
    env, phase = ctx.env_name, ctx.phase
    now = ctx.clock.time()
    current = ctx.state.get(env)
    ctx.resumed_from = current.status
    if current.phase != phase.name:
        ctx.state.update(env, now, phase=phase.name, step_index=0, ramp_index=0, ramp_applied=False,
                         observe_started=None, status=RUNNING, reason=None)
        ctx.state.audit(env, "phase_started", now, phase=phase.name, playbook=str(ctx.playbook_path))
    else:
        ctx.state.update(env, now, status=RUNNING)
        if current.status in (RUNNING, HELD, INTERRUPTED):
            ctx.state.audit(env, "resumed", now, phase=phase.name, step_index=current.step_index)
    total = len(phase.steps)
    while True:
        current = ctx.state.get(env)
        if current.step_index >= total:
            if switched_off(phase, ctx.resolved.env, ctx.flags):
                # never call a phase that turns the feature on complete while the feature is off
                ctx.state.update(env, ctx.clock.time(), status=HELD, reason="the flag is off")
                return RunOutcome("flag_off", EXIT_HELD,
                                  f"phase {phase.name} reached its end in {env} but the flag is off in "
                                  f"{ctx.flags.describe()}; not marked completed. Run `rollout resume --env {env} "
                                  "--reason ...` to ramp again", env, phase.name)
            ctx.state.update(env, ctx.clock.time(), status=COMPLETED)
            ctx.state.audit(env, "phase_completed", ctx.clock.time(), phase=phase.name, commit=ctx.commit)
            ctx.notify("phase_completed", summary=f"phase {phase.name} completed", commit=ctx.commit)
            if phase is ctx.playbook.phases[-1]:
                ctx.notify("rollout_completed", summary=f"{ctx.playbook.name}: every phase completed",
                           commit=ctx.commit)
            return RunOutcome(COMPLETED, EXIT_OK, f"phase {phase.name} completed in {env}", env, phase.name)
        step = phase.steps[current.step_index]
        label = step_label(step, current.step_index)
        ctx.out.step(current.step_index, total, label, step.kind)
        ctx.state.audit(env, "step_started", ctx.clock.time(), step=label, kind=step.kind)
        kind = KINDS.get(step.kind)
        if kind is None:
            raise ConfigError(f"step {label}: kind {step.kind!r} is not available in this version of rollout")
        try:
            result = kind.run(ctx, step, label)
        except RolledBackMeanwhile as exc:
            return RunOutcome(ROLLED_BACK, EXIT_ROLLED_BACK, str(exc), env, phase.name, label)
        except Exception as exc:  # noqa: BLE001 - see cannot_continue
            result = cannot_continue(ctx, step, exc)
        ctx.results.append(result.record(label, step.kind))
        now = ctx.clock.time()
        if result.status == DONE:
            ctx.state.audit(env, "step_done", now, step=label, detail=result.detail)
            with ctx.state.tx() as db:
                ctx.state.update(env, now, db=db, step_index=current.step_index + 1, ramp_index=0,
                                 ramp_applied=False, observe_started=None)
            continue
        if result.status == AWAIT:
            ctx.state.update(env, now, status=AWAITING_APPROVAL, reason=result.detail)
            ctx.state.audit(env, "awaiting_approval", now, step=label, detail=result.detail)
            ctx.notify("hold_timeout" if result.verdict is not None else "approval_needed", step=label,
                       summary=f"{result.detail}; approve with `rollout advance --env {env} --approve`")
            return RunOutcome(AWAITING_APPROVAL, EXIT_HELD,
                              f"{label}: {result.detail} - approve with `rollout advance --env {env} --approve`",
                              env, phase.name, label)
        verdict = result.verdict.record() if result.verdict else {"summary": result.detail}
        done = switch_off(OffPath.of(ctx), f"{label} failed: {result.detail}", automatic=True, verdict=verdict,
                          step=label)
        ctx.incident_report = done.report
        return done.outcome(env, phase.name, label, f"{label} failed: {result.detail}")


def cannot_continue(ctx: RunContext, step: Any, exc: Exception) -> StepResult:
    """A step that raised. While the feature may be on (a ramp or gate step, or the flag recorded
    on), the answer is a failed step, so the flag goes off: a ramp that cannot continue never
    leaves the feature on behind a crash. Otherwise (the flag off, a configuration problem in
    another step) the error goes to the person as before."""
    watching = step.kind in ("ramp", "gate") or bool(ctx.state.get(ctx.env_name).flag)
    if not watching or isinstance(exc, KeyboardInterrupt) or \
            (isinstance(exc, RolloutError) and step.kind not in ("ramp", "gate")):
        raise exc
    what = str(exc) if isinstance(exc, RolloutError) else f"{type(exc).__name__}: {exc}"
    return StepResult(STEP_FAIL, f"could not continue ({what})")


class Lines(Protocol):
    """Where a flag-off tells a person what it does (a :class:`Reporter` is one)."""

    def line(self, text: str, style: str = "") -> None: ...


class _Silent:
    def line(self, text: str, style: str = "") -> None:
        """Says nothing."""


@dataclass
class OffPath:
    """What a flag-off works with, for an automatic one (from a run's context) and a person's
    (``rollout rollback``, the dashboard) alike."""

    env: str
    flags: FlagBackend
    state: StateRecords
    clock: Clock
    out: Lines
    #: the target that confirms the flag off (None: it could not be built)
    target: Any
    resolved: Resolved
    service: ServiceClient
    incidents_dir: Path
    notify: Callable[..., None]

    @classmethod
    def of(cls, ctx: RunContext) -> OffPath:
        return cls(ctx.env_name, ctx.flags, ctx.state, ctx.clock, ctx.out, ctx.target, ctx.resolved, ctx.service,
                   ctx.incidents_dir, ctx.notify)


@dataclass(frozen=True)
class SwitchedOff:
    """How a flag-off went: ``off`` None when the write itself failed; ``problem`` why it is not
    confirmed (the write's failure, or the target not reporting the flag off); the report written."""

    off: FlagOff | None
    problem: str | None
    report: Path | None

    def outcome(self, env: str, phase: str | None, step: str | None, summary: str) -> RunOutcome:
        """An automatic flag-off as a run's outcome (exit 1 either way; the message says which)."""
        if self.off is None:
            return RunOutcome("flag_off_failed", EXIT_ROLLED_BACK, f"{summary}; the flag-off FAILED, the feature "
                              f"may still be ON: {self.problem}", env, phase, step)
        return RunOutcome(ROLLED_BACK, EXIT_ROLLED_BACK, f"{summary}; flag turned off" + unconfirmed_note(self.problem),
                          env, phase, step, self.off)


def switch_off(path: OffPath, reason: str, *, automatic: bool, verdict: dict[str, Any] | None = None,
               who: str | None = None, step: str | None = None) -> SwitchedOff:
    """The one flag-off path: write the flag off (:func:`kill`; nothing waits before it), then see
    the target take it in, write the incident report and tell the webhooks, whatever the write
    did. A write that failed is recorded (``flag_off_failed``), reported and notified as loudly
    as a flag-off that the target did not confirm."""
    off: FlagOff | None = None
    problem: str | None
    try:
        off = kill(path.env, path.flags, path.state, path.clock, reason, automatic=automatic, verdict=verdict, who=who)
    except RolloutError as exc:
        problem = f"the flag write failed: {exc}"
        path.out.line(f"FLAG-OFF FAILED for {path.env}: {exc}", "bold red")
    else:
        path.out.line(f"flag turned off for {path.env}" + (f": {step} failed" if step else ""), "bold red")
        problem = record_confirmation(path, off, who=who)
    report = write_incident(path, who)
    path.notify("flag_off", step=step, percent=off.previous_percent if off else None, automatic=automatic,
                summary=(f"{reason}; THE FLAG-OFF FAILED, the feature may still be ON: {problem}" if off is None
                         else reason + unconfirmed_note(problem)),
                confirmed=problem is None, write_failed=off is None,
                incident_report=str(report) if report else None)
    return SwitchedOff(off, problem, report)


def write_incident(path: OffPath, who: str | None = None) -> Path | None:
    """Write the pre-filled incident report now; a failure here is reported, never raised."""
    try:
        now = path.clock.time()
        written = write_report(path.incidents_dir, path.env,
                               collect(path.state, path.resolved, path.flags, path.service, now), now)
    except Exception as exc:  # noqa: BLE001 - the report must never stand between a flag-off and its notice
        path.out.line(f"warning: the incident report could not be written: {exc}", "bold red")
        return None
    path.state.audit(path.env, "incident_report", path.clock.time(), who=who, path=str(written))
    path.out.line(f"incident report: {written}", "bold")
    return written


def record_confirmation(path: OffPath, off: FlagOff, within: float = 5.0, who: str | None = None) -> str | None:
    """Wait (bounded) until the target reports the flag off; record ``flag_off_confirmed`` or, loudly,
    ``flag_off_unconfirmed`` (also when the target has no way to report it). When the target
    answers but is still on, what it reports becomes the environment's recorded flag: status, the
    dashboard and the next flag-off then show the feature on, as it is. Returns the problem, or
    None when confirmed."""
    seen: dict[str, Any] = {}
    problem = "the target could not be built" if path.target is None else \
        wait_service_applied(path.flags, path.target, path.clock, within, seen)
    now = path.clock.time()
    if problem:
        path.out.line(f"WARNING: the flag was written off but the target has NOT confirmed it: {problem}", "bold red")
        if seen.get("flag_enabled") is not None:
            path.state.update(path.env, now, flag=bool(seen["flag_enabled"]), percent=seen.get("rollout_percent"))
        path.state.audit(path.env, "flag_off_unconfirmed", now, who=who, problem=problem,
                         backend=path.flags.describe(), flag_variable=path.flags.flag_variable,
                         reported_flag=seen.get("flag_enabled"), reported_percent=seen.get("rollout_percent"))
        return problem
    path.out.line(f"the service confirmed the flag off {(now - off.at) * 1000:.0f} ms after the write")
    path.state.audit(path.env, "flag_off_confirmed", now, who=who, after_ms=round((now - off.at) * 1000, 1))
    return None


def unconfirmed_note(problem: str | None) -> str:
    """What an outcome message adds when the target did not confirm a flag-off."""
    if not problem:
        return ""
    return f"; WARNING: the target has NOT confirmed the flag off, the feature may still be on: {problem}"


def flag_on_steps(phase: Phase, env: Environment, flag_variable: str) -> list[int]:
    """Indexes of the steps of ``phase`` that turn the flag on: ramps, and configure steps whose
    values (the environment's, with the step's ``set`` on top) set it true."""
    found = []
    for index, step in enumerate(phase.steps):
        if isinstance(step, RampStep):
            found.append(index)
        elif isinstance(step, ConfigureStep):
            raw = step.set.get(flag_variable, env.variables.get(flag_variable, "false"))
            if is_on(raw):
                found.append(index)
    return found


def switched_off(phase: Phase, env: Environment, flags: FlagBackend) -> bool:
    """Is ``phase`` one that turns the flag on, while the flag is off now?"""
    return bool(flag_on_steps(phase, env, flags.flag_variable)) and not flags.state()[0]


def restart_index(phase: Phase, env: Environment, flag_variable: str, step_index: int) -> int:
    """Where a resumed phase goes on: the last step at or before ``step_index`` that turns the flag
    on (so a ramp starts again at its first percentage), else ``step_index`` itself."""
    earlier = [i for i in flag_on_steps(phase, env, flag_variable) if i <= step_index]
    return earlier[-1] if earlier else step_index


def shown_status(state: StateRecords, row: EnvState, flag_on: bool | None, turns_flag_on: bool) -> str:
    """The status a person should read: ``interrupted`` for a run whose process is gone, never
    ``completed`` for a phase that turns the feature on while its flag is off."""
    if row.status == RUNNING:
        holder = state.holder(row.name)
        if holder is None or (holder["host"] == socket.gethostname() and not pid_alive(holder["pid"])):
            return INTERRUPTED
    if row.status == COMPLETED and turns_flag_on and flag_on is False:
        return "completed, flag off"
    return row.status


@dataclass(frozen=True)
class FlagView:
    """An environment's flag as a person should read it."""

    flag: bool | None
    percent: int | None
    #: where the flag was read (the service that reported it, or the backend); None: only what
    #: the state recorded
    source: str | None
    #: :func:`shown_status` with that flag
    status: str
    #: ``target`` (the service reported what it applied), ``backend`` (what the flag backend
    #: holds: the service could not say) or None (what rollout recorded)
    reported_by: str | None = None


#: how long ``status`` and the dashboard wait for a service to report its flag
REPORT_TIMEOUT_S = 1.0


def flag_view(project: Project, playbook: Playbook | None, state: StateRecords, row: EnvState) -> FlagView:
    """The flag of ``row``'s environment as a person must read it: what the service *reports* it
    applied, when it can report it (the embedded service, ``target.flag_state``, ``flag.read``, a
    fleet's replicas); else what the backend holds now; else what the state recorded. After a
    flag-off the service did not obey, this says "on" as the service does."""
    env = flags = None
    try:
        env = load_environment(row.name, project.environments_dir)
        flags = project.flags(playbook, env) if playbook else (FlagStore(env.env_file) if env.env_file else None)
    except RolloutError:  # still show what is known when a file is broken or a token is missing
        pass
    flag, percent, source, by, turns_on = row.flag, row.percent, None, None, False
    if flags is not None and env is not None:
        try:
            phase = playbook.phase_for(row.name) if playbook else None
            turns_on = bool(phase and flag_on_steps(phase, env, flags.flag_variable))
            reported = _reported_flag(project, playbook, env, flags)
            if reported is not None:
                flag, percent, source, by = *reported, f"reported by the service at {env.service_url}", "target"
            elif flags.env_file is None or flags.env_file.exists():
                (flag, percent), source, by = flags.state(), flags.describe(), "backend"
        except Exception:  # noqa: BLE001 - a backend that cannot be read leaves what was recorded
            pass
        finally:
            flags.close()
    return FlagView(flag, percent, source, shown_status(state, row, flag, turns_on), by)


def _reported_flag(project: Project, playbook: Playbook | None, env: Environment,
                   flags: FlagBackend) -> tuple[bool, int | None] | None:
    """What the environment's target reports it applied, or None when it cannot say (no
    read-back configured, not answering within :data:`REPORT_TIMEOUT_S`)."""
    if playbook is None:
        return None
    try:
        resolved = resolved_or_from_file(project, env, flags)
    except RolloutError:
        return None
    service = ServiceClient(env.service_url, resolved.admin_token, timeout=REPORT_TIMEOUT_S)
    try:
        target = make_target(playbook, service, flags)
        if not target.can_confirm:
            return None
        enabled, percent, _ = target.applied()
        return None if enabled is None else (bool(enabled), percent)
    except Exception:  # noqa: BLE001 - a target that cannot say is not an error here: the backend answers
        return None
    finally:
        service.close()


def flag_stands(flags: FlagBackend, env: str) -> str:
    """Where the flag stands now, in words: ``the flag is ON for 10% of customers in production``."""
    enabled, percent = flags.state()
    if not enabled:
        return f"the flag is OFF in {env}"
    who = "all customers" if percent is None or percent >= 100 else f"{percent}% of customers"
    return f"the flag is still ON for {who} in {env}"


def interrupted(ctx: RunContext) -> RunOutcome:
    """An advance stopped by Ctrl-C: record it, and say where the flag stands and what to run next."""
    env = ctx.env_name
    now = ctx.clock.time()
    current = ctx.state.get(env)
    if current.status == RUNNING:
        ctx.state.update(env, now, status=INTERRUPTED)
    where = flag_stands(ctx.flags, env)
    ctx.state.audit(env, "interrupted", now, phase=current.phase, step_index=current.step_index, flag=where)
    hint = (f"run `rollout rollback --env {env} --reason ...` to stop it, or `rollout advance --env {env}` to continue"
            if ctx.flags.state()[0] else f"run `rollout advance --env {env}` to continue")
    return RunOutcome(INTERRUPTED, 130, f"advance interrupted at step {current.step_index + 1}; {where}; {hint}",
                      env, current.phase)


def resolved_or_from_file(project: Project, env: Environment, flags: FlagBackend) -> Resolved:
    """The environment resolved; if a secret is missing, what the env file holds (the kill path and
    its report must never depend on secrets being at hand)."""
    try:
        return project.resolve(env)
    except ConfigError:
        values = flags.read()
        return Resolved(env, values, tuple(v for k, v in values.items() if is_secret_name(k) and v)) \
            .sharing(project.redactor)


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
        return RunOutcome("passed", EXIT_OK, f"every check and gate of phase {phase.name} passed in {env}"
                          + (f" at commit {ctx.commit[:12]}" if ctx.commit else ""), env, phase.name)
    ctx.state.audit(env, "gate_failed" if worst == "fail" else "gate_held", now, phase=phase.name, commit=ctx.commit,
                    failed=[r["step"] for r in ctx.results if r["status"] != DONE])
    failed = "; ".join(f"{r['step']}: {r['detail']}" for r in ctx.results if r["status"] != DONE)
    if worst == "fail":
        return RunOutcome("failed", EXIT_ROLLED_BACK, f"phase {phase.name} gates failed in {env}: {failed}", env,
                          phase.name)
    return RunOutcome("held", EXIT_HELD, f"phase {phase.name} gates held in {env}: {failed}", env, phase.name)


def rollback(project: Project, env_name: str, reason: str, clock: Clock, who: str | None = None,
             out: Reporter | None = None, confirm_within: float = 5.0) -> RunOutcome:
    """Immediate disable: flag off, ``rolled_back``, recorded, confirmed with the target, report
    written, webhooks told (in the background: the outcome's ``pending`` waits for them). Never
    waits for an advance. Exit 0 only when the target confirmed the flag off; 1 when it did not,
    or when the flag write failed (a backend that cannot even be opened included)."""
    playbook = project.playbook()
    env = load_environment(env_name, project.environments_dir)
    project.learn_secrets(playbook, env)  # a token quoted back by a backend, or pasted in the reason
    state = project.state()
    lines: Lines = out if out is not None else _Silent()
    try:
        flags = project.flags(playbook, env)
    except RolloutError as exc:  # its database down, its token missing: the flag-off fails, loudly
        flags = UnreachableFlags(playbook.flag.variable, playbook.flag.percent_variable,
                                 f"{playbook.flag.backend} flag backend", str(exc))
    notifier = Notifier(playbook.notify, lambda raw: project.secret(raw, env), project.redactor, project.state,
                        actor=who or actor()) if playbook.notify else None
    resolved = resolved_or_from_file(project, env, flags)
    service = ServiceClient(env.service_url, resolved.admin_token, timeout=3.0)
    try:
        phase = state.get(env_name).phase

        def notify(event: str, **details: Any) -> None:
            if notifier is not None:
                notifier.fire(event, env_name, phase=phase, **details)

        try:
            target = make_target(playbook, service, flags) if not isinstance(flags, UnreachableFlags) else None
        except RolloutError:
            target = None
        path = OffPath(env_name, flags, state, clock, lines, target, resolved, service, project.incidents_dir, notify)
        done = switch_off(path, reason, automatic=False, who=who)
    finally:
        service.close()
        flags.close()
        state.close()
    report, problem = done.report, done.problem
    details = {"incident_report": str(report) if report else None, "confirmed": problem is None}
    suffix = f"; incident report: {report}" if report else ""
    pending = notifier.drain if notifier is not None else None
    if done.off is None:
        return RunOutcome("flag_off_failed", EXIT_ROLLED_BACK,
                          f"the flag-off FAILED in {env_name} ({flags.describe()}): the service at {env.service_url} "
                          f"has NOT confirmed the feature off and may still be ON: {problem}{suffix}",
                          env_name, phase, details={**details, "problem": problem}, pending=pending)
    if problem:
        return RunOutcome("unconfirmed", EXIT_ROLLED_BACK,
                          f"the flag was written off ({flags.describe()}), but the service at {env.service_url} "
                          f"has NOT confirmed the feature off: {problem}. The feature may still be ON: check that "
                          f"the service reads {flags.describe()} and obeys {flags.flag_variable}{suffix}",
                          env_name, phase, flag_off=done.off,
                          details={**details, "problem": problem}, pending=pending)
    return RunOutcome(ROLLED_BACK, EXIT_OK, f"flag off in {env_name} ({flags.describe()}), confirmed by the service; "
                      f"reason: {reason}{suffix}", env_name, phase, flag_off=done.off, details=details,
                      pending=pending)


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
        completed_but_off = current.status == COMPLETED and phase is not None and current.phase == phase.name \
            and switched_off(phase, env, flags)
        if current.status != ROLLED_BACK and not completed_but_off:
            raise StateError(f"{env_name} is {current.status}, not rolled back; nothing to resume")
        holder = state.holder(env_name)
        if holder is not None:
            raise StateError(f"{env_name} is locked by {holder['owner']} (pid {holder['pid']}); try again later")
        step_index = current.step_index
        if phase is not None and current.phase == phase.name:
            step_index = restart_index(phase, env, flags.flag_variable, min(current.step_index, len(phase.steps)))
        now = clock.time()
        state.update(env_name, now, status=HELD, reason=reason, step_index=step_index, ramp_index=0,
                     ramp_applied=False, observe_started=None)
        state.audit(env_name, "resumed_after_rollback", now, reason=reason, step_index=step_index,
                    stopped_at=current.step_index)
    finally:
        state.close()
    what = ""
    if phase is not None and step_index < len(phase.steps):
        step = phase.steps[step_index]
        what = f" ({step_label(step, step_index)}"
        what += f", restarting at {step.percentages[0]}%)" if isinstance(step, RampStep) else ")"
    return RunOutcome(HELD, EXIT_OK, f"{env_name} may advance again from step {step_index + 1}{what}; "
                      f"the flag stays off until a step turns it on", env_name, current.phase)


def watch(ctx: RunContext, max_evaluations: int | None = None, duration: float | None = None) -> RunOutcome:
    """Evaluate the watch gate every interval; a fail turns the flag off and stops."""
    policy = ctx.playbook.watch
    gates = ctx.playbook.gates[policy.gate]
    started = ctx.clock.monotonic()
    count = 0
    while True:
        current = ctx.state.get(ctx.env_name)
        if current.status == ROLLED_BACK:
            return RunOutcome(ROLLED_BACK, EXIT_ROLLED_BACK, f"{ctx.env_name} is rolled back ({current.reason})",
                              ctx.env_name, current.phase)
        verdict = measure(ctx, gates, percent=current.percent)
        record(ctx, verdict, "watch", current.percent)
        ctx.out.verdict("watch", verdict)
        count += 1
        if verdict.verdict == FAIL:
            done = switch_off(OffPath.of(ctx), f"watch: {verdict.summary}", automatic=True, verdict=verdict.record(),
                              step="watch")
            ctx.incident_report = done.report
            return done.outcome(ctx.env_name, current.phase, "watch", f"gate failed: {verdict.summary}")
        if (max_evaluations is not None and count >= max_evaluations) or \
                (duration is not None and ctx.clock.monotonic() - started >= duration):
            return RunOutcome("watching", EXIT_OK, f"{count} evaluations, last {verdict.verdict}", ctx.env_name,
                              current.phase)
        ctx.clock.sleep(policy.interval)

