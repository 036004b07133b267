"""``rollout agent``: the always-on controller (:mod:`rollout.agent`)."""

from __future__ import annotations

import faulthandler
import os
import signal
from pathlib import Path
from typing import Any

import click

from rollout.cli.main import cli, project_options


@cli.command()
@project_options
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="ROLLOUT_AGENT_CONFIG",
    help="The agent's YAML file (projects, state, listen, lease_ttl, workers); without it, the one project "
    "--playbook and --environments name.",
)
@click.option("--name", help="This agent's name in leases and the audit (default: host-pid).")
@click.option("--listen", help="HOST:PORT of /healthz, /metrics and the verdict API (default 127.0.0.1:8710).")
@click.option("--lease-ttl", help="How long a lease lives without renewal (default 5s).")
@click.option("--workers", type=click.IntRange(1, 256), help="Environments evaluated at the same time (default 16).")
@click.option(
    "--dashboard", "with_dashboard", is_flag=True, help="Serve the dashboard too (its token: $ROLLOUT_DASHBOARD_TOKEN)."
)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def agent(
    config_path: Path | None,
    name: str | None,
    listen: str | None,
    lease_ttl: str | None,
    workers: int | None,
    with_dashboard: bool,
    log_format: str,
) -> None:
    """Drive every environment of the projects it is given, always: runs handed over by `rollout
    advance`, holds and gates on schedule, a bake after 100 %, failover with other agents on
    PostgreSQL. Stops cleanly on SIGTERM (its environments go to another agent at once)."""
    from rollout.agent.config import ProjectEntry, load_config
    from rollout.agent.controller import Agent
    from rollout.agent.log import AgentLog
    from rollout.agent.server import create_agent_app
    from rollout.util.serving import ServerThread

    meta = click.get_current_context().meta
    one = None
    if config_path is None:
        one = ProjectEntry(
            playbook=meta["rollout.playbook_path"],
            environments=meta["rollout.environments_dir"],
            state=meta["rollout.state_path"],
            secrets_file=meta["rollout.secrets_file"],
            repo=meta["rollout.repo_path"],
        )
    config = load_config(config_path, one, name=name, listen=listen, lease_ttl=lease_ttl, workers=workers)
    host, port = config.host_port
    log = AgentLog(config.name, json_lines=log_format == "json")
    server_app: Any
    controller = Agent(config, log, url=f"http://{config.listen}")
    app = create_agent_app(controller)  # before open(): a listen address without its token registers nothing
    controller.open()
    if with_dashboard:
        from rollout.dashboard.app import create_dashboard

        token = os.environ.get("ROLLOUT_DASHBOARD_TOKEN") or None
        if token is not None and len(token) < 8:
            raise click.BadParameter("ROLLOUT_DASHBOARD_TOKEN must be at least 8 characters")
        app.mount("/", create_dashboard(controller.served[0].project, token))
    server_app = app
    server = ServerThread(server_app, host, port).start()
    log.event(
        "listening", f"http://{host}:{server.port}/healthz" + (" and the dashboard at /" if with_dashboard else "")
    )

    def stop(signum: int, frame: object) -> None:
        controller.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # `kill -USR1` prints every thread's stack to the log: what an agent that seems stuck is doing
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        controller.run()
    finally:
        server.stop(timeout=5)
