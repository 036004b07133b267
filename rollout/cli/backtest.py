"""``rollout backtest``: what the playbook's gates (the candidate, ``--playbook``) would have decided on
an environment's past runs, from the state store, or over a past range of Prometheus data. Read-only."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from rollout.cli.main import _emit, _json, _project, cli, project_options  # noqa: F401 - the CLI's shared parts
from rollout.util.outcomes import ExitCode

#: exit codes: 0 no run decided for the worse; 1 a healthy run would have been rolled back, or a
#: recorded rollback would not have happened
EXIT_REGRESSED = ExitCode.FAILED


def _instant(text: str, option: str) -> float:
    """Seconds since the epoch from an ISO 8601 time (UTC when it names no zone) or a number."""
    from rollout.util.errors import ConfigError

    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{option}: expected an ISO 8601 time (2026-12-01T10:00:00Z) or seconds, got {text!r}"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@cli.command()
@project_options
@click.option("--env", "env_name", required=True, help="The environment whose past is replayed.")
@click.option("--from", "start", metavar="TIME", help="Replay Prometheus data from this time (ISO 8601 or seconds).")
@click.option("--to", "end", metavar="TIME", help="... to this time (with --from).")
@click.option("--percent", type=click.IntRange(1, 100), help="With --from/--to: hold this percentage over the range.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole replay as JSON.")
@click.option("--junit", "junit_path", metavar="FILE", help="Write JUnit XML: a failure per run decided for the worse.")
@click.option("--html", "html_path", metavar="FILE", help="Write the replay as an HTML page with its charts.")
def backtest(
    env_name: str,
    start: str | None,
    end: str | None,
    percent: int | None,
    as_json: bool,
    junit_path: str | None,
    html_path: str | None,
) -> None:
    """Replay ENV's recorded evaluations (or Prometheus over --from..--to) with the playbook's gates and
    say, step by step, what they would have decided beside what was decided. Exit 1 when a healthy run
    would have been rolled back or a recorded rollback missed. Writes no flag and no state."""

    from rollout.checks.client import ServiceClient
    from rollout.engine.backtest import backtest_prometheus, backtest_store, summary
    from rollout.incident.backtest import backtest_html
    from rollout.junit import backtest_junit
    from rollout.playbook.environments import load_environment
    from rollout.providers import MetricSources
    from rollout.util.errors import ConfigError
    from rollout.util.outfile import check_output_path, write_output

    for path, option in ((junit_path, "--junit"), (html_path, "--html")):
        if path is not None:
            check_output_path(path, option)
    if (start is None) != (end is None):
        raise ConfigError("--from and --to go together")
    if percent is not None and start is None:
        raise ConfigError("--percent goes with --from and --to")
    project = _project()
    playbook = project.playbook()
    phase = playbook.phase_for(env_name)
    if phase is None:
        raise ConfigError(f"{project.playbook_path}: no phase runs in environment {env_name!r}")
    state = project.state(read_only=True)
    try:
        if start is not None and end is not None:
            env = load_environment(env_name, project.environments_dir)
            project.learn_secrets(playbook, env)
            service = ServiceClient(env.service_url, timeout=5.0)
            sources = MetricSources.build(playbook, service, lambda raw: project.secret(raw, env))
            try:
                recorded = state.verdicts(env_name, limit=1_000_000)
                runs = [
                    backtest_prometheus(
                        playbook, phase, sources, _instant(start, "--from"), _instant(end, "--to"), percent, recorded
                    )
                ]
            finally:
                sources.close()
                service.close()
        else:
            runs = backtest_store(playbook, phase, state, env_name)
    finally:
        state.close()
    lines = summary(runs) if runs else [f"no recorded run of {env_name} to replay"]
    exit_code = EXIT_REGRESSED if any(r.regressed for r in runs) else ExitCode.OK
    result = {
        "environment": env_name,
        "candidate": str(project.playbook_path),
        "summary": lines,
        "exit_code": exit_code,
        "runs": [r.as_dict() for r in runs],
    }
    result = project.redactor.value(result)
    if junit_path is not None:
        write_output(junit_path, backtest_junit(env_name, str(project.playbook_path), result["runs"]), "--junit")
    if html_path is not None:
        write_output(html_path, backtest_html(env_name, str(project.playbook_path), result), "--html")
    if as_json:
        click.echo(_json(result))
    else:
        _print(result)
    sys.stdout.flush()
    if exit_code:
        sys.exit(exit_code)


def _print(result: dict) -> None:
    from rich.table import Table

    from rollout.console import make_console

    console = make_console()
    for run in result["runs"]:
        started = datetime.fromtimestamp(run["started"], UTC)
        table = Table(
            title=f"run {run['run']} ({run['source']}, from {started:%Y-%m-%d %H:%M:%S}Z): {run['summary']}",
            title_justify="left",
        )
        for column in ("time", "step", "%", "recorded", "replayed", "deciding metric"):
            table.add_column(column)
        for step in run["steps"]:
            for row in step["evaluations"]:
                differs = row["recorded"] is not None and row["recorded"] != row["replayed"]
                table.add_row(
                    f"+{row['ts'] - run['started']:.1f}s",
                    str(row["step"]),
                    "-" if row["percent"] is None else str(row["percent"]),
                    row["recorded"] or "-",
                    row["replayed"] or "-",
                    row["deciding"] or "",
                    style="yellow" if differs else None,
                )
        console.print(table)
        for note in run["notes"]:
            console.print(f"  note: {note}", markup=False)
    for line in result["summary"]:
        console.print(line, markup=False, style="bold")
