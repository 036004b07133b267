"""The ``rollout`` command line.

Commands parse their options, call the library and print. Errors cross one boundary,
:func:`main`: a :class:`~rollout.util.errors.RolloutError` becomes one line on stderr and its exit code;
anything else becomes one line too (never a traceback), exit code 70.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from rollout import __version__
from rollout.util.errors import EXIT_USAGE, ConfigError, RolloutError, StateError
from rollout.util.outcomes import ExitCode, Status

EXIT_INTERNAL = ExitCode.INTERNAL


class InternalError(RolloutError):
    """Something rollout did not expect; shown as one line, never a traceback."""

    exit_code = EXIT_INTERNAL


class _RedactingGroup(click.Group):
    """Every error a command raises leaves through here: its text passes the command's redactor
    (a backend's answer may quote a token, a reason may hold a phone) before anyone sees it."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Abort, click.exceptions.Exit, KeyboardInterrupt):
            raise
        except RolloutError as exc:
            exc.args = (_redactor(ctx).text(str(exc)),)
            raise
        except Exception as exc:
            raise InternalError(f"internal error: {type(exc).__name__}: {_redactor(ctx).text(str(exc))}") from exc


def _redactor(ctx: click.Context | None = None):  # noqa: ANN202
    """The redactor of this command's project (phones only before a project is made)."""
    from rollout.util.redact import Redactor

    ctx = ctx or click.get_current_context(silent=True)
    project = ctx.meta.get("rollout.project") if ctx is not None else None
    return project.redactor if project is not None else Redactor()


@click.group(cls=_RedactingGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rollout")
def cli() -> None:
    """Turn a risky feature launch into code: playbooks, gates, ramps, and a kill switch."""


# --- the engine ------------------------------------------------------------------------------------


def _remember(ctx: click.Context, param: click.Parameter, value: object) -> object:
    ctx.meta[f"rollout.{param.name}"] = value
    return value


def _environments_option(**extra):  # noqa: ANN003, ANN202 - a click decorator
    """--environments, as every command that reads environments declares it."""
    return click.option(
        "--environments",
        "environments_dir",
        default="environments",
        show_default=True,
        envvar="ROLLOUT_ENVIRONMENTS",
        type=click.Path(file_okay=False, path_type=Path),
        **extra,
    )


def _secrets_file_option(**extra):  # noqa: ANN003, ANN202 - a click decorator
    """--secrets-file, as every command that resolves secrets declares it."""
    return click.option(
        "--secrets-file",
        "secrets_file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="ROLLOUT_SECRETS_FILE",
        help="Env file with secret values, read after the process environment.",
        **extra,
    )


def project_options(func):  # noqa: ANN001, ANN201 - a click decorator
    """--playbook, --environments, --state, --secrets-file and --repo, on every engine command; read
    them back with :func:`_project`."""
    options = [
        click.option(
            "--playbook",
            "playbook_path",
            default="playbooks/whatsapp.yaml",
            show_default=True,
            envvar="ROLLOUT_PLAYBOOK",
            type=click.Path(dir_okay=False, path_type=Path),
            expose_value=False,
            callback=_remember,
        ),
        _environments_option(expose_value=False, callback=_remember),
        click.option(
            "--state",
            "state_path",
            default=".rollout/state.db",
            show_default=True,
            envvar="ROLLOUT_STATE",
            type=str,
            help="The engine's state: a SQLite file, or postgresql://... to share it.",
            expose_value=False,
            callback=_remember,
        ),
        _secrets_file_option(expose_value=False, callback=_remember),
        click.option(
            "--repo",
            "repo_path",
            default=".",
            show_default=True,
            envvar="ROLLOUT_REPO",
            type=click.Path(file_okay=False, path_type=Path),
            help="The git repository promote steps use and gate, advance and status read commits from.",
            expose_value=False,
            callback=_remember,
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _project():  # noqa: ANN202
    """This command's project (one per command: its redactor learns every secret the command resolves)."""
    from rollout.engine.project import Project

    meta = click.get_current_context().meta
    if "rollout.project" not in meta:
        state = meta["rollout.state_path"]
        url = state if state.startswith(("postgresql://", "postgres://")) else None
        meta["rollout.project"] = Project(
            meta["rollout.playbook_path"],
            meta["rollout.environments_dir"],
            Path(".rollout/state.db") if url else Path(state),
            meta["rollout.secrets_file"],
            meta["rollout.repo_path"],
            state_url=url,
        )
    return meta["rollout.project"]


def _json(value: Any) -> str:
    """``value`` as the JSON a command prints: never ``Infinity`` or ``NaN`` (JSON has neither; a
    figure that holds one is shown as null)."""
    import json

    from rollout.util.numbers import finite

    return json.dumps(finite(value), indent=2, default=str, allow_nan=False)


def _emit(outcome, as_json: bool, extra: dict | None = None, *, then=None) -> None:  # noqa: ANN001
    """Print ``outcome`` (redacted) at once; run ``then`` (deliveries still going) after, before exiting."""

    redactor = _redactor()
    if as_json:
        click.echo(_json(redactor.value({**outcome.as_dict(), **(extra or {})})))
    else:
        colour = {Status.COMPLETED: "green", Status.ROLLED_BACK: "red", Status.AWAITING_APPROVAL: "yellow"}.get(
            outcome.status
        )
        click.secho(
            f"{outcome.status}: {redactor.text(outcome.message)}", fg=colour, err=outcome.exit_code != ExitCode.OK
        )
    sys.stdout.flush()
    sys.stderr.flush()
    if then is not None:
        then()
    if outcome.exit_code:
        sys.exit(outcome.exit_code)


@cli.command()
@click.argument("playbook", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--preflight",
    is_flag=True,
    help="Also run every gate query of --env's phase once against its providers (exit 2 if one cannot work).",
)
@click.option("--env", "env_name", help="The environment whose phase --preflight checks.")
@_environments_option()
@_secrets_file_option(default=None)
def validate(
    playbook: Path, preflight: bool, env_name: str | None, environments_dir: Path, secrets_file: Path | None
) -> None:
    """Check a playbook; print its phases, or one line per problem (exit 2). With --preflight
    --env ENV, run the phase's gate queries once too (exit 2 when one cannot work)."""
    from rollout.engine.steps import describe as _describe
    from rollout.playbook.load import load_playbook
    from rollout.playbook.model import step_label

    if (preflight or env_name) and not (preflight and env_name):
        raise click.UsageError("--preflight and --env go together")  # before the playbook is called valid
    book = load_playbook(playbook)
    click.echo(f"{playbook}: valid playbook {book.name!r}, {len(book.phases)} phases, gates: {', '.join(book.gates)}")
    for phase in book.phases:
        where = f"environment {phase.environment}" if phase.waves is None else f"waves: {phase.wave_words()}"
        click.echo(f"  {phase.name} ({where}): {len(phase.steps)} steps")
        for i, step in enumerate(phase.steps):
            click.echo(f"    {i + 1}. {step.kind:<9} {step_label(step, i)}: {_describe(step, book)}")
    for name, gates in book.gates.items():
        click.echo(f"  gate {name}: {', '.join(m.describe() for m in gates.metrics)}")
    for warning in book.warnings():
        click.echo(f"warning: {playbook}: {warning}", err=True)
    if preflight and env_name:
        _preflight(playbook, env_name, environments_dir, secrets_file)


def _preflight(playbook: Path, env_name: str, environments_dir: Path, secrets_file: Path | None) -> None:
    """``validate --preflight``: the phase's gate queries, once each, read-only."""
    from rollout.console import QuietReporter
    from rollout.engine.preflight import run_preflight
    from rollout.engine.project import Project, open_context
    from rollout.util.clock import SystemClock

    project = Project(playbook, environments_dir, Path(".rollout/state.db"), secrets_file)
    click.get_current_context().meta["rollout.project"] = project  # its redactor guards the error line
    with open_context(project, env_name, SystemClock(), QuietReporter(), read_only=True) as ctx:
        report = run_preflight(ctx)
    for check in report.checks:
        said = f"FAIL {check.metric}: {check.problem}" if check.problem else f"ok   {check.metric}: {check.asked}"
        click.echo(project.redactor.text(f"  preflight {said}" + (f" ({check.note})" if check.note else "")))
    if not report.ok:
        raise ConfigError(f"{playbook}: preflight of environment {env_name} failed: {'; '.join(report.problems)}")
    click.echo(f"preflight: {len(report.checks)} gate queries of environment {env_name} answered as a ramp needs")


@cli.command()
@project_options
@click.option("--env", "env_name", required=True, help="The environment (its phase is planned).")
@click.option(
    "--traffic",
    metavar="RATE",
    help="The target's requests per second overall for the forecasts: 50/s, 3000/m (default: the gates' provider, last hour).",
)
@click.option(
    "--breach",
    "breaches",
    multiple=True,
    metavar="METRIC=VALUE",
    help="Also forecast catching this breach (repeatable): success_rate=80%, avg_latency_ms=8000.",
)
@click.option("--json", "as_json", is_flag=True)
def plan(env_name: str, traffic: str | None, breaches: tuple[str, ...], as_json: bool) -> None:
    """Show the environment's phase, step by step, what its configure step would change, and what each
    ramp step's gates will do at the traffic (forecasts)."""

    from rollout.console import QuietReporter
    from rollout.engine.calendar import schedule_of
    from rollout.engine.forecasting import forecast_lines, phase_forecast
    from rollout.engine.project import open_context
    from rollout.engine.runner import plan_rows, promotion_previews
    from rollout.playbook.environments import shown_diff
    from rollout.playbook.model import ConfigureStep
    from rollout.util.clock import SystemClock

    project = _project()
    with open_context(project, env_name, SystemClock(), QuietReporter(), read_only=True) as ctx:
        rows = plan_rows(ctx)
        previews = promotion_previews(ctx, rows)
        configure = next((s for s in ctx.phase.steps if isinstance(s, ConfigureStep)), None)
        changes = []
        if configure is not None:
            target = project.resolve(ctx.resolved.env, overrides=configure.set)
            changes = shown_diff(target, ctx.flags.read())
        current = ctx.state.get(env_name)
        schedule, now = schedule_of(ctx), ctx.clock.time()
        forecast = phase_forecast(ctx, traffic, breaches)
    if as_json:
        click.echo(
            _json(
                {
                    "environment": env_name,
                    "phase": ctx.phase.name,
                    "status": current.status,
                    "steps": rows,
                    "configure_diff": [{"variable": n, "from": o, "to": v} for n, o, v in changes],
                    "promotions": {
                        k: v if isinstance(v, str) else [{"commit": c, "summary": m} for c, m in v]
                        for k, v in previews.items()
                    },
                    "schedule": None if schedule.empty else schedule.as_dict(now),
                    "forecast": forecast,
                },
            )
        )
        return
    from rich.table import Table

    from rollout.console import make_console

    table = Table(title=f"phase {ctx.phase.name} in {env_name} ({current.status})", title_justify="left")
    for column in ("#", "step", "kind", "status", "what"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["index"]), row["step"], row["kind"], row["status"], row["what"])
    console = make_console()
    console.print(table)
    used = dict.fromkeys(g for g in (getattr(step, "gate", None) for step in ctx.phase.steps) if g)
    for name in used:
        console.print(f"gate {name}: {', '.join(m.describe() for m in ctx.playbook.gates[name].metrics)}", markup=False)
    if not schedule.empty:
        for line in [*schedule.lines(), schedule.now_line(now)]:
            console.print(f"schedule: {line}", markup=False)
    for label, commits in previews.items():
        if isinstance(commits, str):
            console.print(f"{label}: {commits}", markup=False)
            continue
        console.print(f"{label} would promote {len(commits)} commit(s):", markup=False)
        for sha, summary in commits:
            console.print(f"  {sha[:10]} {summary}", markup=False)
    if changes:
        console.print(f"configure would change {ctx.flags.describe()}:")
        for name, old, new in changes:
            console.print(
                f"  {name}: {old if old is not None else '(unset)'} -> {new if new is not None else '(unset)'}",
                markup=False,
            )
    for line, style in forecast_lines(forecast):
        console.print(line, style=style or None, markup=False)


@cli.command()
@project_options
@click.option("--env", "env_name", help="The environment (or one region of a phase in waves) to advance.")
@click.option(
    "--phase",
    "phase_name",
    help="Every region of this phase in waves, driven from this process (or handed to the agents serving them).",
)
@click.option("--dry-run", is_flag=True, help="Show what would run and change; write nothing.")
@click.option("--approve", is_flag=True, help="Approve the approval step this run reaches.")
@click.option("--yes", is_flag=True, help="Do not ask before a phase marked confirm changes anything.")
@click.option(
    "--override-evidence",
    metavar="REASON",
    help="Promote even without the required gate evidence; the reason is recorded.",
)
@click.option(
    "--override-window",
    is_flag=True,
    help="Let the ramp move up outside its windows, freezes and start_at (never past its cutoff); audited.",
)
@click.option("--reason", help="Why the windows are overridden (with --override-window); recorded.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of progress.")
def advance(
    env_name: str | None,
    phase_name: str | None,
    dry_run: bool,
    approve: bool,
    yes: bool,
    override_evidence: str | None,
    override_window: bool,
    reason: str | None,
    as_json: bool,
) -> None:
    """Run the environment's phase from where it stopped (--env), or every region of a phase in
    waves (--phase).

    Exit 0 done, 1 a check or gate failed and the flag was turned off, 2 usage or configuration
    error, 3 held or waiting for approval (or for its wave).
    """
    from rollout.console import ConsoleReporter, QuietReporter
    from rollout.engine import runner
    from rollout.util.clock import SystemClock

    if override_window != bool(reason and reason.strip()):
        raise click.UsageError("--override-window and --reason go together (the reason is recorded in the audit)")
    if (env_name is None) == (phase_name is None):
        raise click.UsageError("give --env ENV (one environment or region) or --phase NAME (every region of a phase)")
    project = _project()
    if phase_name is not None:
        from rollout.cli.waves import advance_phase, plan_phase

        if dry_run:
            plan_phase(project, phase_name, as_json)
            return
        advance_phase(
            project,
            phase_name,
            approve=approve,
            yes=yes,
            override_evidence=override_evidence,
            override_window=reason if override_window else None,
            as_json=as_json,
        )
        return
    assert env_name is not None
    if dry_run:
        click.get_current_context().invoke(plan, env_name=env_name, as_json=as_json)
        if not as_json:
            click.echo("dry run: nothing was written")
        return
    out = QuietReporter() if as_json else ConsoleReporter(redactor=project.redactor)
    handed = _hand_to_agent(project, env_name, approve, yes, override_evidence, out)
    if handed is not None:
        _emit(handed, as_json)
        return
    with runner.open_context(
        project,
        env_name,
        SystemClock(),
        out,
        approve=approve,
        drain=False,
        override_evidence=override_evidence,
        override_window=reason if override_window else None,
    ) as ctx:
        current = ctx.state.get(env_name)
        # --approve is a person's explicit decision on this phase: it confirms as --yes does
        if ctx.phase.confirm and not (yes or approve) and current.status not in ("completed", "rolled_back"):
            _confirm_phase(ctx.phase.name, env_name, current.step_index)
        try:
            outcome = runner.advance(ctx)
        except KeyboardInterrupt:
            outcome = runner.interrupted(ctx)
        results = ctx.results
    _emit(outcome, as_json, {"steps": results}, then=ctx.notifier.drain if ctx.notifier else None)


def _confirm_phase(phase: str, env_name: str, step_index: int) -> None:
    if not sys.stdin.isatty():
        raise StateError(
            f"phase {phase} asks for confirmation and there is no terminal to ask "
            f"on; run `rollout advance --env {env_name} --yes` to confirm"
        )
    click.confirm(f"Run phase {phase} in {env_name} from step {step_index + 1}?", abort=True)


#: how long a terminal waits for an agent to take a run it handed over before running it itself
AGENT_TAKES_WITHIN_S = 15.0


def _hand_to_agent(project, env_name: str, approve: bool, yes: bool, override: str | None, out):  # noqa: ANN001, ANN202
    """When a live agent serves ``env_name``, hand the run to it and follow it here; returns how it
    ended, or None to run it in this terminal (no agent serves it, or none took it in time)."""
    from rollout.engine import handoff, runner
    from rollout.engine.follow import Follower, follow
    from rollout.engine.state import actor
    from rollout.util.clock import SystemClock

    clock = SystemClock()
    state = project.state()
    try:
        agents = handoff.serving(state, env_name, clock.time())
        if not agents:
            return None
        with runner.open_context(project, env_name, clock, out, read_only=True, state=state) as ctx:
            done = runner.finished(ctx)
            if done is not None:
                return done
            runner.check_order(ctx)
            current = ctx.state.get(env_name)
            if ctx.phase.confirm and not (yes or approve):
                _confirm_phase(ctx.phase.name, env_name, current.step_index)
            phase = ctx.phase
        since = state.last_ids(env_name)
        options = {"approve": approve, "override_evidence": override}
        request = handoff.request_run(state, env_name, options, actor(), clock.time())
        names = ", ".join(a.id for a in agents)
        out.line(
            f"{env_name} is served by the agent {names}: the run is handed to it and followed here "
            "(Ctrl-C stops following, not the run)",
            "bold",
        )
        try:
            outcome = follow(state, request, Follower(state, phase, env_name, out, since), clock, AGENT_TAKES_WITHIN_S)
        except KeyboardInterrupt:
            from rollout.engine.outcome import RunOutcome

            taken = handoff.get(state, request)
            who = taken.taken_by if taken and taken.taken_by else names
            return RunOutcome(
                "following_stopped",
                ExitCode.INTERRUPTED,
                f"stopped following; the run goes on in the agent {who}. `rollout status` and `rollout history "
                f"--env {env_name}` show it; `rollout rollback --env {env_name} --reason ...` stops it",
                env_name,
                phase.name,
            )
        if outcome is None:
            out.line(f"no agent took the run within {AGENT_TAKES_WITHIN_S:g}s; running it in this terminal", "yellow")
        return outcome
    finally:
        state.close()


@cli.command()
@project_options
@click.option("--env", "env_name", required=True)
@click.option("--reason", required=True, help="Why; recorded in the audit log.")
@click.option("--json", "as_json", is_flag=True)
def rollback(env_name: str, reason: str, as_json: bool) -> None:
    """Turn the feature off now and confirm it with the service. Never waits for an advance.

    Exit 0 when the service confirmed the flag off, 1 when it did not (the feature may still be on).
    """
    from rollout.console import ConsoleReporter, QuietReporter, make_console
    from rollout.engine import runner
    from rollout.util.clock import SystemClock

    project = _project()
    out = QuietReporter() if as_json else ConsoleReporter(make_console(stderr=True), project.redactor)
    outcome = runner.rollback(project, env_name, reason, SystemClock(), out=out)
    _emit(outcome, as_json, then=outcome.pending)  # the answer first; webhook deliveries finish after


@cli.command()
@project_options
@click.option("--env", "env_name", required=True)
@click.option("--reason", required=True, help="Why; recorded in the audit log.")
def pause(env_name: str, reason: str) -> None:
    """Hold the running step at its percentage past its hold (gates keep watching; a breach still
    turns the flag off) until `rollout continue`."""
    from rollout.engine import runner
    from rollout.util.clock import SystemClock

    _emit(runner.pause(_project(), env_name, reason, SystemClock()), False)


@cli.command("continue")
@project_options
@click.option("--env", "env_name", required=True)
@click.option("--reason", required=True, help="Why; recorded in the audit log.")
def continue_cmd(env_name: str, reason: str) -> None:
    """Let a paused step decide again as its gates say."""
    from rollout.engine import runner
    from rollout.util.clock import SystemClock

    _emit(runner.unpause(_project(), env_name, reason, SystemClock()), False)


@cli.command()
@project_options
@click.option("--env", "env_name", required=True)
@click.option("--reason", required=True, help="Why; recorded in the audit log.")
@click.option("--full", is_flag=True, help="An emergency: the flag on for everyone now, the ramp done.")
@click.option("--yes", is_flag=True, help="Confirm --full without asking.")
def promote(env_name: str, reason: str, full: bool, yes: bool) -> None:
    """Accept the running step now (the next percentage, or the next step); --full: 100 % now."""
    from rollout.engine import runner
    from rollout.util.clock import SystemClock

    if full and not yes:
        if not sys.stdin.isatty():
            raise StateError(
                "promote --full turns the feature on for every customer now and asks for confirmation; there is no "
                f"terminal to ask on: run `rollout promote --env {env_name} --full --yes --reason ...`"
            )
        click.confirm(f"Turn the feature on for 100% of customers in {env_name} NOW, skipping the ramp?", abort=True)
    _emit(runner.promote_now(_project(), env_name, reason, SystemClock(), full=full), False)


@cli.command()
@project_options
@click.option("--env", "env_name", required=True)
@click.option("--reason", required=True, help="Why it may go on; recorded in the audit log.")
def resume(env_name: str, reason: str) -> None:
    """Let a rolled-back environment advance again (its ramp restarts at the first percentage)."""
    from rollout.engine import runner
    from rollout.util.clock import SystemClock

    project = _project()
    _emit(runner.resume(project, env_name, reason, SystemClock()), False)


@cli.command()
@project_options
@click.option("--env", "env_name", required=True)
@click.option("--max-evaluations", type=click.IntRange(1), help="Stop after this many evaluations.")
@click.option("--duration", type=str, help="Stop after this long (e.g. 10m).")
@click.option("--json", "as_json", is_flag=True)
def watch(env_name: str, max_evaluations: int | None, duration: str | None, as_json: bool) -> None:
    """Keep evaluating the watch gate; turn the flag off on a breach (exit 1)."""
    from rollout.console import ConsoleReporter, QuietReporter
    from rollout.engine import runner
    from rollout.util.clock import SystemClock
    from rollout.util.units import parse_duration

    try:
        seconds = parse_duration(duration) if duration else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from None
    project = _project()
    out = QuietReporter() if as_json else ConsoleReporter(redactor=project.redactor)
    with runner.open_context(project, env_name, SystemClock(), out, drain=False) as ctx:
        outcome = runner.watch(ctx, max_evaluations, seconds)
    _emit(outcome, as_json, then=ctx.notifier.drain if ctx.notifier else None)


def _note_missing(state) -> None:  # noqa: ANN001
    if state.missing:
        click.echo(
            f"note: {state.path} does not exist: nothing has run with this state yet (is --state right?)", err=True
        )


def _known_environment(project, state, env_name: str) -> None:  # noqa: ANN001
    """Refuse (exit 2) an environment that has neither a file nor a record, listing the known ones."""
    folder = Path(project.environments_dir)
    files = {p.stem for p in folder.glob("*.yaml")} if folder.is_dir() else set()
    recorded = {row.name for row in state.all()}
    if env_name not in files | recorded:
        from rollout.util.errors import ConfigError

        known = ", ".join(sorted(files | recorded)) or "none"
        raise ConfigError(f"no environment {env_name!r} (known: {known}; files in {folder})")


@cli.command()
@project_options
@click.option("--env", "env_name", help="One environment (default: all).")
@click.option("--json", "as_json", is_flag=True)
def status(env_name: str | None, as_json: bool) -> None:
    """Where each environment stands: status, phase, step, percentage, flag, commit; and whether the
    commit each promotion would take (in --repo) has the gate evidence it requires."""
    import time
    from datetime import UTC, datetime

    from rollout.engine.driver import who_drives
    from rollout.engine.evidence import promotion_evidence
    from rollout.engine.flagview import flag_view
    from rollout.engine.waves import wave_view, wave_words

    project = _project()
    now = time.time()
    try:
        playbook = project.playbook()
    except RolloutError:  # status still shows what it knows when the playbook is broken
        playbook = None
    repo = project.repo()
    state = project.state(read_only=True)
    try:
        if env_name:
            _known_environment(project, state, env_name)
        _note_missing(state)
        evidence = promotion_evidence(playbook, state, repo, env_name) if playbook and repo else []
        rows = [state.get(env_name)] if env_name else state.all()
        data = []
        for row in rows:
            view = flag_view(project, playbook, state, row)
            live = {
                "flag": view.flag if view.source else None,
                "percent": view.percent if view.source else None,
                "env_file": view.source,
                "reported_by": view.reported_by,
            }
            driver = who_drives(state, row, now)
            shown = view.status
            if driver is not None and driver.kind == "agent" and row.status == "completed":
                shown = f"{view.status}, baking"
            data.append(
                {
                    **row.__dict__,
                    "status": shown,
                    "recorded_status": row.status,
                    "live": live,
                    "lock": state.holder(row.name),
                    "driven_by": driver.__dict__ if driver is not None else None,
                    "wave": wave_view(playbook, state, row.name, now),
                    "promotions": [e for e in evidence if e["environment"] == row.name],
                }
            )
    finally:
        state.close()
        if repo is not None:
            repo.close()
    if as_json:
        click.echo(_json(data))
        return
    from rich.table import Table

    from rollout.console import make_console

    table = Table(title="rollout status", title_justify="left")
    for column in (
        "environment",
        "status",
        "phase",
        "step",
        "percent",
        "flag",
        "driven by",
        "commit",
        "updated",
        "note",
    ):
        table.add_column(column)
    for d in data:
        updated = datetime.fromtimestamp(d["updated_at"], UTC).strftime("%Y-%m-%d %H:%M:%SZ") if d["updated_at"] else ""
        # the env file is what the service obeys; without it, what rollout last recorded
        source = d["live"] if d["live"]["env_file"] else {"flag": d["flag"], "percent": d["percent"]}
        mark = "" if d["live"]["env_file"] else " (recorded)"
        flag = {True: "on", False: "off", None: "?"}[source["flag"]] + mark
        table.add_row(
            d["name"],
            d["status"],
            d["phase"] or "",
            str(d["step_index"] + 1),
            "" if source["percent"] is None else f"{source['percent']}%{mark}",
            flag,
            f"{d['driven_by']['kind']} {d['driven_by']['name']}" if d["driven_by"] else "",
            (d["commit_sha"] or "")[:10],
            updated,
            (d["reason"] or "")[:60],
        )
    console = make_console()
    console.print(table)
    for d in data:  # a phase in waves: which wave each region is in, the exposure against the budget
        if d["wave"] is not None:
            console.print(f"{d['name']}: {wave_words(d['wave'])}", markup=False)
    for e in evidence:
        where = f"{e['environment']}: {e['step']}"
        if e["problem"]:
            console.print(f"{where}: cannot check its {e['evidence_from']} evidence: {e['problem']}", markup=False)
        elif e["evidence"]:
            when = datetime.fromtimestamp(e["evidence"]["ts"], UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            what = e["evidence"]["action"].replace("_", " ")
            console.print(
                f"{where}: {e['source']} at {e['commit'][:12]} has {e['evidence_from']} evidence ({what} {when})",
                markup=False,
            )
        else:
            console.print(
                f"{where}: {e['source']} at {e['commit'][:12]} has no {e['evidence_from']} evidence yet; run "
                f"`rollout gate --env {e['evidence_from']}` with {e['source']} checked out in {repo.working_dir if repo else '.'}",
                markup=False,
                style="yellow",
            )


@cli.command()
@project_options
@click.option("--env", "env_name", required=True)
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True)
def history(env_name: str, limit: int, as_json: bool) -> None:
    """The audit log and the gate verdicts of one environment, oldest first."""
    import time
    from datetime import UTC, datetime

    from rollout.engine.driver import who_drives
    from rollout.engine.waves import wave_view, wave_words
    from rollout.incident.words import audit_words

    project = _project()
    state = project.state(read_only=True)
    try:
        playbook = project.playbook()
    except RolloutError:  # history still shows the record when the playbook is broken
        playbook = None
    try:
        _known_environment(project, state, env_name)
        _note_missing(state)
        driver = who_drives(state, state.get(env_name), time.time())
        wave = wave_view(playbook, state, env_name, time.time())
        events = [
            {"ts": a["ts"], "type": "audit", "actor": a["actor"], "action": a["action"], "detail": a["detail"]}
            for a in state.audit_log(env_name, limit)
        ]
        events += [
            {
                "ts": v["ts"],
                "type": "verdict",
                "step": v["step"],
                "percent": v["percent"],
                "verdict": v["verdict"],
                "summary": v["summary"],
                "metrics": v["metrics"],
            }
            for v in state.verdicts(env_name, limit)
        ]
    finally:
        state.close()
    events.sort(key=lambda e: e["ts"])
    events = events[-limit:]
    if as_json:
        click.echo(_json(events))
        return
    if driver is not None:
        click.echo(f"{env_name} is driven by {driver.words()} now")
    if wave is not None:
        click.echo(f"{env_name} is in {wave['phase']}'s {wave_words(wave)}")
    for e in events:
        when = datetime.fromtimestamp(e["ts"], UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
        if e["type"] == "audit":
            detail = audit_words(e["action"], e["detail"])
            click.echo(f"{when}  {e['action']:<20} {e['actor']}  {detail}")
        else:
            where = f"{e['step']}" + (f" at {e['percent']}%" if e["percent"] is not None else "")
            click.echo(f"{when}  verdict {e['verdict']:<12} {where}: {e['summary']}")


@cli.command()
@click.option("--breach", is_flag=True, help="Turn the provider bad during the ramp; watch the flag go off.")
@click.option(
    "--rate",
    default=50.0,
    show_default=True,
    type=click.FloatRange(1, 500),
    help="Simulated customer bookings per second in production.",
)
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where state and logs go (default .rollout/demo/TIMESTAMP).",
)
def demo(breach: bool, rate: float, folder: Path | None) -> None:
    """Run the whole plan locally: sandbox and services on free ports, dev -> staging -> production.

    Runs the shipped playbook and environments (package data), from any folder."""
    from rollout.console import ConsoleReporter
    from rollout.demo import run_demo

    sys.exit(run_demo(folder, breach, rate, ConsoleReporter()))


@cli.command()
@project_options
@click.option("--env", "env_name", required=True)
@click.option("--out", type=str, help="Write here (default: print); its folder must exist.")
@click.option(
    "--template",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A jinja2 template to use instead of the shipped one.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "html"]),
    default="md",
    show_default=True,
    help="Markdown (with --out, the timeline chart is written beside it as .svg) or self-contained HTML.",
)
def incident(env_name: str, out: str | None, template: Path | None, fmt: str) -> None:
    """Render an incident report for ENV from the record: timeline, breach figures, configuration, errors.

    It never needs the flag service: a backend that cannot be read (within flag.timeout) leaves the
    flag as rollout recorded it, and the report says so."""
    from rollout.checks.client import ServiceClient
    from rollout.engine.killswitch import open_or_unreachable
    from rollout.engine.project import resolved_or_from_file
    from rollout.engine.waves import wave_note
    from rollout.incident.report import HTML_TEMPLATE, collect, render
    from rollout.playbook.environments import load_environment
    from rollout.targets import make_target
    from rollout.util.clock import SystemClock
    from rollout.util.outfile import check_output_path, write_output

    if out is not None:
        check_output_path(out, "--out")  # before anything is read: a bad path costs nothing
    project = _project()
    playbook = project.playbook()
    env = load_environment(env_name, project.environments_dir)
    project.learn_secrets(playbook, env)
    flags = open_or_unreachable(lambda: project.flags(playbook, env), playbook.flag)
    resolved = resolved_or_from_file(project, env, flags)
    state = project.state(read_only=True)
    service = ServiceClient(env.service_url, resolved.admin_token, timeout=3.0)
    phase = playbook.phase_for(env_name)
    try:
        data = collect(
            state,
            resolved,
            flags,
            make_target(playbook, service, flags, resolved),
            SystemClock().time(),
            wave=wave_note(phase, env_name) if phase else None,
        )
    finally:
        service.close()
        state.close()
        flags.close()
    chart = Path(out).with_suffix(".svg") if out and fmt == "md" and data.get("chart_svg") else None
    if chart is not None:
        data["chart_file"] = chart.name
    text = render(data, template or (HTML_TEMPLATE if fmt == "html" else None))
    if out is None:
        click.echo(text, nl=False)
        return
    if chart is not None:
        write_output(chart, data["chart_svg"], "--out")
    write_output(out, text, "--out")
    click.echo(f"incident report written to {out}" + (f" (chart: {chart})" if chart else ""))


@cli.command("gate")
@project_options
@click.option("--env", "env_name", required=True)
@click.option("--phase", "phase_name", help="The phase whose checks run (default: the environment's own).")
@click.option("--commit", help="The commit under test (default: the one checked out in --repo).")
@click.option(
    "--junit", "junit_path", type=str, help="Write JUnit XML here: one test case per check and per gate metric."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def gate_cmd(env_name: str, phase_name: str | None, commit: str | None, junit_path: str | None, as_json: bool) -> None:
    """Run a phase's checks and gates for CI: no prompts, nothing changed. Exit codes as advance."""
    from rollout.console import ConsoleReporter, QuietReporter
    from rollout.engine import runner
    from rollout.junit import junit_xml, write_junit
    from rollout.util.clock import SystemClock
    from rollout.util.outfile import check_output_path

    if junit_path is not None:
        check_output_path(junit_path, "--junit")  # before the gates run, not after
    project = _project()
    out = QuietReporter() if as_json else ConsoleReporter(redactor=project.redactor)
    clock = SystemClock()
    started = clock.time()
    with runner.open_context(
        project, env_name, clock, out, phase_name=phase_name, commit=commit or project.repo_commit()
    ) as ctx:
        outcome = runner.gate(ctx)
        results = ctx.results
        if junit_path is not None:
            write_junit(
                junit_path,
                ctx.resolved.redactor().text(junit_xml(env_name, ctx.phase.name, results, started, ctx.commit)),
            )
    _emit(outcome, as_json, {"commit": ctx.commit, "steps": results, "junit": str(junit_path) if junit_path else None})


@cli.command()
@project_options
@click.option("--env", "env_name", required=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a variable (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show the diff; write nothing.")
def configure(env_name: str, overrides: tuple[str, ...], dry_run: bool) -> None:
    """Apply an environment's variables to its service's env file (atomically; secrets as references)."""
    from rollout.engine import runner
    from rollout.util.clock import SystemClock

    pairs = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        pairs[key] = value
    project = _project()
    done = runner.configure(project, env_name, pairs, SystemClock(), dry_run=dry_run)
    shown = project.redactor.text
    for name, old, new in done.changes:
        click.echo(shown(f"{name}: {old if old is not None else '(unset)'} -> {new if new is not None else '(unset)'}"))
    if not done.written:
        click.echo(shown(f"dry run: {done.where} not written ({len(done.changes)} change(s))"))
        return
    click.echo(shown(f"{done.where}: {len(done.changes)} change(s) written"))


@cli.command()
@project_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8700, show_default=True, type=click.IntRange(0, 65535))
def dashboard(host: str, port: int) -> None:
    """A live view of every environment, its ramp chart and the audit timeline.

    Roll back and Approve need the token in $ROLLOUT_DASHBOARD_TOKEN (at least 8 characters);
    without it the dashboard is read-only.
    """
    from rollout.dashboard.app import create_dashboard
    from rollout.util.serving import serve_forever

    token = os.environ.get("ROLLOUT_DASHBOARD_TOKEN") or None
    if token is not None and len(token) < 8:
        raise click.BadParameter("ROLLOUT_DASHBOARD_TOKEN must be at least 8 characters")
    click.echo(f"dashboard: http://{host}:{port}/ ({'actions need the token' if token else 'read-only'})", err=True)
    serve_forever(create_dashboard(_project(), token), host, port, access_log=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI inside the one error boundary."""
    try:
        result = cli.main(args=argv, prog_name="rollout", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("rollout: aborted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code if exc.exit_code != ExitCode.FAILED else EXIT_USAGE)
    except RolloutError as exc:
        click.echo(f"rollout: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("rollout: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no user ever sees a traceback
        click.echo(f"rollout: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(result if isinstance(result, int) else ExitCode.OK)
