"""``rollout drill``: rehearse the kill switch against a live environment (:mod:`rollout.engine.drill`)."""

from __future__ import annotations

import sys

import click

from rollout.cli.main import _emit, _project, cli, project_options


@cli.command()
@project_options
@click.option("--env", "env_name", required=True)
@click.option(
    "--percent",
    type=click.IntRange(0, 100),
    help="The share of customers the flag is on for when it goes off (default: the lowest of the ramp; 0: a test "
    "cohort, nobody in). A flag found on is drilled from where it stands.",
)
@click.option(
    "--within",
    default="3s",
    show_default=True,
    help="The bound: a replica that has not obeyed the flag-off this long after the write is flagged.",
)
@click.option(
    "--hint-only", is_flag=True, help="On a flag service the service polls: no second flag-off without the hint."
)
@click.option("--reason", default="kill-switch drill", show_default=True, help="Why; recorded in the audit log.")
@click.option("--yes", is_flag=True, help="Do not ask before a drill that changes what customers get.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of progress.")
def drill(
    env_name: str, percent: int | None, within: str, hint_only: bool, reason: str, yes: bool, as_json: bool
) -> None:
    """Rehearse the kill switch: the flag on (at --percent, unless on already), off, every replica
    timed, then back as found. Audited as a drill, never as a rollback.

    Exit 0 every replica obeyed within --within and the flag is back as found, confirmed; 1 not (or a
    rollback overtook the drill: it stands); 2 refused (rolled back, an advance or an agent drives
    the environment) or bad usage; 130 interrupted (the flag restored first).
    """
    from rollout.console import ConsoleReporter, QuietReporter
    from rollout.engine import drill as drills
    from rollout.engine import runner
    from rollout.util.clock import SystemClock
    from rollout.util.errors import StateError
    from rollout.util.units import parse_duration

    try:
        bound = parse_duration(within)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--within") from None
    if not 0 < bound <= 60:
        raise click.BadParameter(f"must be above 0 and at most 60s, got {within}", param_hint="--within")
    project = _project()
    out = QuietReporter() if as_json else ConsoleReporter(redactor=project.redactor)

    def confirm(plan: drills.Plan) -> bool:
        if not plan.exposes or yes:
            return True
        if not sys.stdin.isatty():
            raise StateError(
                f"{plan.words(env_name)}: this changes what customers get while it runs and there is no terminal "
                f"to ask on; run `rollout drill --env {env_name} --yes` to confirm"
            )
        click.confirm(f"{plan.words(env_name)}. Run it?", abort=True)
        return True

    with runner.open_context(project, env_name, SystemClock(), out) as ctx:
        outcome = drills.run(ctx, percent, bound, compare=not hint_only, reason=reason, confirm=confirm)
    _emit(outcome, as_json)
