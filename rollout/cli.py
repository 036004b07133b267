"""The ``rollout`` command line.

Commands parse their options, call the library and print. Errors cross one boundary,
:func:`main`: a :class:`~rollout.errors.RolloutError` becomes one line on stderr and its exit code;
anything else becomes one line too (never a traceback), exit code 70.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from rollout import __version__
from rollout.errors import EXIT_USAGE, RolloutError

EXIT_INTERNAL = 70


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rollout")
def cli() -> None:
    """Turn a risky feature launch into code: playbooks, gates, ramps, and a kill switch."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Env file read at start and re-read live (flag, percentage, every setting).")
@click.option("--db", "db_path", default=".rollout/service.db", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="SQLite database of the service.")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON event log here instead of stderr.")
@click.option("--access-log/--no-access-log", default=False, show_default=True)
def serve(host: str, port: int, env_file: Path | None, db_path: Path, log_file: Path | None,
          access_log: bool) -> None:
    """Run the WhatsApp booking-notification service."""
    from rollout.serving import serve_forever
    from rollout.service.app import create_app
    from rollout.service.settings import LiveSettings

    live = LiveSettings(env_file=env_file, environ=os.environ)
    serve_forever(create_app(live, db_path, log_path=log_file), host, port, access_log=access_log)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8900, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", envvar="ZAPTRA_API_TOKEN", required=True,
              help="The API token the sandbox accepts (default: $ZAPTRA_API_TOKEN).")
@click.option("--seed", type=int, help="Seed for fault draws, for repeatable runs.")
def sandbox(host: str, port: int, token: str, seed: int | None) -> None:
    """Run the local Zaptra-compatible sandbox (base URL http://HOST:PORT/api/wpbox)."""
    from rollout.sandbox.app import create_sandbox_app
    from rollout.serving import serve_forever

    if len(token) < 8:
        raise click.BadParameter("must be at least 8 characters", param_hint="--token")
    click.echo(f"sandbox: ZAPTRA_API_URL=http://{host}:{port}/api/wpbox", err=True)
    serve_forever(create_sandbox_app(token, seed), host, port)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI inside the one error boundary."""
    try:
        result = cli.main(args=argv, prog_name="rollout", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("rollout: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code if exc.exit_code != 1 else EXIT_USAGE)
    except RolloutError as exc:
        click.echo(f"rollout: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("rollout: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # the last line of defence: no user ever sees a traceback
        click.echo(f"rollout: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(result if isinstance(result, int) else 0)
