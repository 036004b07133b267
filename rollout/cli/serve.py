"""``rollout serve``, ``rollout sandbox`` and ``rollout load``: the product rollout ships (the WhatsApp
booking-notification service, the embedded target), its Zaptra-compatible sandbox, and a booking load
against it, run from the command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from rollout.cli.main import _json, cli
from rollout.util.errors import ConfigError
from rollout.util.outcomes import ExitCode


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Env file read at start and re-read live (flag, percentage, every setting).",
)
@click.option(
    "--db",
    "db_path",
    default=".rollout/service.db",
    show_default=True,
    help="The service's database: a SQLite file, or postgresql://... shared by a fleet of replicas.",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSON event log here instead of stderr.",
)
@click.option("--access-log/--no-access-log", default=False, show_default=True)
@click.option(
    "--flag-db",
    envvar="ROLLOUT_FLAG_DB",
    help="postgresql://...: follow the flag and percentage of "
    "--flag-env there (LISTEN/NOTIFY), for a fleet of replicas.",
)
@click.option("--flag-env", help="The environment whose flag row this replica follows (with --flag-db).")
@click.option(
    "--unleash-url",
    envvar="UNLEASH_URL",
    help="http://...: follow a feature in this Unleash server (its client token in UNLEASH_API_TOKEN).",
)
@click.option(
    "--unleash-feature",
    default="whatsapp_notifications",
    show_default=True,
    help="The Unleash feature that decides who gets WhatsApp (with --unleash-url).",
)
@click.option(
    "--flag-refresh",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.1, 60),
    help="Seconds between polls of Unleash (with --unleash-url).",
)
@click.option(
    "--flag-lease",
    type=click.FloatRange(0.5, 600),
    help="Seconds the service keeps sending without a flag read from Unleash (default: refresh + 3).",
)
@click.option("--replica-id", help="This replica's name in the fleet, unique per running replica (default: host-pid).")
def serve(
    host: str,
    port: int,
    env_file: Path | None,
    db_path: str,
    log_file: Path | None,
    access_log: bool,
    flag_db: str | None,
    flag_env: str | None,
    unleash_url: str | None,
    unleash_feature: str,
    flag_refresh: float,
    flag_lease: float | None,
    replica_id: str | None,
) -> None:
    """Run the WhatsApp booking-notification service.

    Its flag comes from the env file, or a fleet's PostgreSQL row (--flag-db), or an Unleash
    feature (--unleash-url); per customer, OpenFeature decides."""
    from rollout.booking.service.app import create_app
    from rollout.booking.service.schema import StorageError
    from rollout.booking.service.settings import LiveSettings
    from rollout.booking.service.stores import open_store
    from rollout.util.serving import serve_forever

    if replica_id is not None and not replica_id.strip():
        raise click.BadParameter("must not be empty", param_hint="--replica-id")
    try:  # a database that cannot be opened or is too new stops start-up with one line
        open_store(db_path, replica_id or "start-up check").close()
    except StorageError as exc:
        raise ConfigError(str(exc)) from exc
    source: Any = None
    if flag_db and unleash_url:
        raise click.UsageError("--flag-db and --unleash-url: the flag comes from one place; choose one")
    if flag_db:
        from rollout.booking.flags.postgres import FlagFollower

        if not flag_env:
            raise click.UsageError("--flag-db needs --flag-env (the environment whose flag to follow)")
        source = FlagFollower(flag_db, flag_env, replica_id)
    if unleash_url:
        from rollout.booking.flags.unleash import UnleashSource

        token = os.environ.get("UNLEASH_API_TOKEN", "")
        source = UnleashSource(unleash_url, token, unleash_feature, flag_refresh, flag_lease, replica_id)
    live = LiveSettings(env_file=env_file, environ=os.environ)
    serve_forever(
        create_app(live, db_path, log_path=log_file, flag_source=source, replica_id=replica_id),
        host,
        port,
        access_log=access_log,
    )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8900, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar="ZAPTRA_API_TOKEN",
    required=True,
    help="The API token the sandbox accepts (default: $ZAPTRA_API_TOKEN).",
)
@click.option("--seed", type=int, help="Seed for fault draws, for repeatable runs.")
def sandbox(host: str, port: int, token: str, seed: int | None) -> None:
    """Run the local Zaptra-compatible sandbox (base URL http://HOST:PORT/api/wpbox)."""
    from rollout.booking.sandbox.app import create_sandbox_app
    from rollout.util.serving import serve_forever

    if len(token) < 8:
        raise click.BadParameter("must be at least 8 characters", param_hint="--token")
    click.echo(f"sandbox: ZAPTRA_API_URL=http://{host}:{port}/api/wpbox", err=True)
    serve_forever(create_sandbox_app(token, seed), host, port)


@cli.command("load")
@click.option("--url", required=True, help="The service's base URL (http://127.0.0.1:8000).")
@click.option("--bookings", type=click.IntRange(1, 100_000), help="How many bookings.")
@click.option("--concurrency", default=10, show_default=True, type=click.IntRange(1, 512))
@click.option("--rate", type=click.FloatRange(0.1, 5000), help="Bookings per second (with --duration).")
@click.option("--duration", type=str, help="How long at --rate (e.g. 30s); at most 10m.")
@click.option("--json", "as_json", is_flag=True)
def load_cmd(
    url: str, bookings: int | None, concurrency: int, rate: float | None, duration: str | None, as_json: bool
) -> None:
    """Send a bounded booking load to a service and report latency percentiles."""

    from rollout.console import ConsoleReporter
    from rollout.targets.embedded.load import run_bookings
    from rollout.util.units import parse_duration

    if (bookings is None) == (rate is None and duration is None):
        raise click.UsageError("give --bookings, or --rate with --duration")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:  # else every booking fails, exit 1
        raise click.BadParameter(f"{url!r} is not an http(s):// URL", param_hint="--url")
    seconds = None
    if duration is not None:
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--duration") from None
        if not 0 < seconds <= 600:
            raise click.BadParameter("must be more than 0 and at most 10m", param_hint="--duration")
    if bookings is None and (rate is None or seconds is None):
        raise click.UsageError("--rate and --duration go together")
    total = bookings or int((rate or 0) * (seconds or 0))
    if as_json:
        result = run_bookings(url, bookings, concurrency, rate, seconds)
    else:
        with ConsoleReporter().progress(total, "bookings") as tick:
            result = run_bookings(url, bookings, concurrency, rate, seconds, progress=tick)
    summary = {
        "requested": result.requested,
        "created": result.created,
        "errors": result.errors,
        "success_rate": result.success_rate,
        "elapsed_s": round(result.elapsed_s, 3),
        "achieved_rate": round(result.achieved_rate, 1),
        "p50_ms": result.p(50),
        "p95_ms": result.p(95),
        "p99_ms": result.p(99),
    }
    if as_json:
        click.echo(_json(summary))
    else:
        click.echo(
            f"{result.created}/{result.requested} bookings in {result.elapsed_s:.1f}s "
            f"({result.achieved_rate:.0f}/s); p50 {result.p(50) or 0:.1f} ms, p95 {result.p(95) or 0:.1f} ms, "
            f"p99 {result.p(99) or 0:.1f} ms" + (f"; errors {result.errors}" if result.errors else "")
        )
    if result.created < result.requested:
        sys.exit(ExitCode.FAILED)
