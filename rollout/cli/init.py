"""``rollout init``: a first playbook and environments for your own service.

Asks (at a terminal) or takes as options the service's URL, the flag backend and its settings, and a
Prometheus URL; reads that Prometheus's metric names, metadata and series labels, proposes an error
rate, a p95 latency and treatment against control where it can tell them, runs each query once, and
writes files that ``rollout validate`` passes, with REVIEW comments. Nothing is overwritten without
``--force``; nothing is written at all unless every file validates.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from rollout.cli.main import cli
from rollout.playbook.plugins import FLAGS
from rollout.util.errors import ConfigError

if TYPE_CHECKING:
    from rollout.playbook.scaffold import Proposal, Scaffold


def backends() -> tuple[str, ...]:
    """The flag backends it offers: every registered one (built-in or installed),
    :data:`rollout.playbook.plugins.FLAGS` (the installed packages are scanned once per process)."""
    return tuple(FLAGS.names())


class RegisteredBackend(click.Choice[str]):
    """``--flag-backend``'s choice of :func:`backends`, read when first asked (``init`` runs, or its
    help is shown), not when the CLI is imported: the scan of installed packages (~5 ms) is then
    paid by ``init`` alone, not by every command's start."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        return backends()

    @choices.setter
    def choices(self, _given: tuple[str, ...]) -> None:
        """Nothing to keep: click's own ``__init__`` sets the (empty) choices given to it."""


#: where a service's health usually answers, in the order tried
HEALTH_PATHS = ("/healthz", "/health", "/-/healthy", "/api/health", "/status", "/")
_VARIABLE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def _url(value: str | None, option: str, required: bool = True) -> str | None:
    if not value:
        if required:
            raise click.BadParameter("is required", param_hint=option)
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{value!r} is not an http(s):// URL", param_hint=option)
    if "@" in parts.netloc:
        raise click.BadParameter("no credentials in a URL: they would be written to the file", param_hint=option)
    return value.rstrip("/")


def _ask(value: object, option: str, text: str, default: object = None, required: bool = True) -> object:
    """``value`` if given; else, at a terminal, a question; else the default, or exit 2 naming ``option``."""
    if value not in (None, ""):
        return value
    if sys.stdin.isatty():
        return click.prompt(text, default=default if default is not None else ("" if not required else None))
    if default is not None or not required:
        return default
    raise click.UsageError(f"{option} is required (no terminal to ask on)")


def _variable(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _VARIABLE.match(value):
        raise click.BadParameter("a variable name: capital letters, digits and _", param=param)
    return value


def _probe_health(url: str) -> tuple[str, str]:
    """The first of :data:`HEALTH_PATHS` that answers 2xx, and a sentence on what was found."""
    import httpx

    tried = []
    try:
        with httpx.Client(base_url=url, timeout=3.0) as http:
            for path in HEALTH_PATHS:
                try:
                    status = http.get(path).status_code
                except httpx.HTTPError as exc:
                    return (
                        "/healthz",
                        f"REVIEW: {url} did not answer at init ({type(exc).__name__}); /healthz is a guess",
                    )
                if 200 <= status < 300:
                    return path, f"the health probe: GET {path} answered {status} at init"
                tried.append(f"{path} {status}")
    except httpx.HTTPError:
        pass
    return "/healthz", f"REVIEW: no health path answered 2xx at init ({', '.join(tried)}); /healthz is a guess"


def _default_name(url: str) -> str:
    host = urlsplit(url).hostname or ""
    first = host.split(".")[0].lower()
    if not first or first == "localhost" or re.fullmatch(r"[0-9]+", first) or ":" in host:
        return "my-service"
    slug = re.sub(r"[^a-z0-9-]+", "-", first).strip("-")
    return slug if _NAME.match(slug) else "my-service"


@cli.command("init")
@click.option("--service-url", help="Your service's base URL (checks and the health probe are joined to it).")
@click.option("--flag-backend", type=RegisteredBackend(), help="Where the flag lives (default envfile).")
@click.option("--flag-variable", callback=_variable, help="The flag's name in configure steps [FEATURE_ENABLED].")
@click.option(
    "--percent-variable", callback=_variable, help="The percentage's name in configure steps [FEATURE_PERCENT]."
)
@click.option("--env-file", help="envfile backend: the env file your service reads [.rollout/ENV/service.env].")
@click.option("--flag-url", help="http backend: the flag endpoint (a path or a URL); unleash: the server's URL.")
@click.option("--flag-token-env", callback=_variable, help="http/unleash: the variable that holds its token.")
@click.option("--flag-command", help="command backend: the command, with {enabled} and {percent}.")
@click.option("--flag-database-env", callback=_variable, help="postgres backend: the variable holding its URL.")
@click.option("--unleash-feature", help="unleash backend: the feature's name.")
@click.option("--prometheus", "prometheus_url", help="Prometheus' URL: its metrics become the gates (empty: none).")
@click.option("--prometheus-token-env", callback=_variable, help="The variable holding Prometheus' bearer token.")
@click.option("--selector", default="", help='Only series matching these label matchers, e.g. job="shop".')
@click.option("--name", help="The playbook's name and file name (default: from the service URL's host).")
@click.option(
    "--environment",
    "environments",
    multiple=True,
    help="An environment, in order (repeatable; the last one ramps) [production].",
)
@click.option(
    "--dir",
    "folder",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where playbooks/ and environments/ are written.",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def init_cmd(
    service_url: str | None,
    flag_backend: str | None,
    flag_variable: str | None,
    percent_variable: str | None,
    env_file: str | None,
    flag_url: str | None,
    flag_token_env: str | None,
    flag_command: str | None,
    flag_database_env: str | None,
    unleash_feature: str | None,
    prometheus_url: str | None,
    prometheus_token_env: str | None,
    selector: str,
    name: str | None,
    environments: tuple[str, ...],
    folder: Path,
    force: bool,
) -> None:
    """Write a first playbook and environments for your own service, its gates proposed from the
    metrics Prometheus already has. At a terminal it asks for what the options do not say."""
    import shlex

    from rollout.playbook.scaffold import ENVIRONMENT_SCHEMA, PLAYBOOK_SCHEMA, Flag, Scaffold

    service = _url(str(_ask(service_url, "--service-url", "Your service's base URL")), "--service-url")
    assert service is not None
    offered = backends()
    backend = str(_ask(flag_backend, "--flag-backend", f"Flag backend ({'/'.join(offered)})", "envfile"))
    if backend not in offered:
        raise click.BadParameter(f"one of {', '.join(offered)}", param_hint="--flag-backend")
    flag = Flag(backend, flag_variable or "FEATURE_ENABLED", percent_variable or "FEATURE_PERCENT")
    if backend == "http":
        flag.url = str(_ask(flag_url, "--flag-url", "The flag endpoint (a path on the service, or a URL)"))
        flag.token_env = flag_token_env or "FLAG_ADMIN_TOKEN"
    elif backend == "command":
        flag.command = shlex.split(str(_ask(flag_command, "--flag-command", "The command ({enabled}, {percent})")))
        if not flag.command:
            raise click.BadParameter("is empty", param_hint="--flag-command")
    elif backend == "postgres":
        flag.database_env = flag_database_env or "FLAG_DB_URL"
    elif backend == "unleash":
        flag.url = _url(str(_ask(flag_url, "--flag-url", "The Unleash server's URL")), "--flag-url")
        flag.feature = str(_ask(unleash_feature, "--unleash-feature", "The Unleash feature"))
        flag.token_env = flag_token_env or "UNLEASH_ADMIN_TOKEN"
    elif backend == "envfile" and env_file is None and sys.stdin.isatty():
        env_file = str(click.prompt("The env file your service reads (empty: one per environment)", default=""))
    prometheus = _url(
        str(_ask(prometheus_url, "--prometheus", "Prometheus' URL (empty: none)", "", required=False) or ""),
        "--prometheus",
        required=False,
    )
    playbook_name = name or _default_name(service)
    if not _NAME.match(playbook_name):
        raise click.BadParameter("lower-case letters, digits, - and _, starting with a letter", param_hint="--name")
    envs = list(environments) or ["production"]
    for env in envs:
        if not _NAME.match(env):
            raise click.BadParameter(f"{env!r}: lower-case letters, digits, - and _", param_hint="--environment")

    files = {
        Path("playbooks") / f"{playbook_name}.yaml": "",
        Path("playbooks") / PLAYBOOK_SCHEMA: "",
        **{Path("environments") / f"{env}.yaml": "" for env in envs},
        Path("environments") / ENVIRONMENT_SCHEMA: "",
    }
    existing = [str(folder / f) for f in files if (folder / f).exists()]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing)} already exist(s); nothing written (--force overwrites)")

    health_path, health_note = _probe_health(service)
    proposals, why_none = _proposals(prometheus, prometheus_token_env, selector)
    scaffold = Scaffold(
        playbook_name,
        service,
        envs,
        flag,
        health_path,
        health_note,
        prometheus,
        proposals,
        why_none,
        env_file,
    )
    _render(scaffold, files)
    _validated(files, playbook_name, envs)
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        _write(folder / path, text)
    shown = [str(folder / f) for f in files]
    click.echo(f"wrote {', '.join(shown)}")
    playbook = folder / "playbooks" / f"{playbook_name}.yaml"
    environments_dir = folder / "environments"
    click.echo("review every line marked REVIEW, then:")
    click.echo(f"  rollout validate {playbook}")
    click.echo(f"  rollout plan --env {envs[-1]} --playbook {playbook} --environments {environments_dir}")


def _proposals(prometheus: str | None, token_env: str | None, selector: str) -> tuple[list[Proposal], str]:
    """The gates Prometheus' metrics make, each query run once; or why there are none."""
    from rollout.providers.discover import DiscoveryError, propose, scan, try_once

    if prometheus is None:
        return [], "no Prometheus was given (--prometheus)"
    token = os.environ.get(token_env) if token_env else None
    selector = selector.strip().removeprefix("{").removesuffix("}").strip()  # {job="shop"} or job="shop"
    try:
        families = scan(prometheus, selector, token=token)
    except DiscoveryError as exc:
        raise ConfigError(f"--prometheus: {exc}") from exc
    click.echo(f"read {len(families)} metrics from {prometheus}" + (f" matching {{{selector}}}" if selector else ""))
    proposals, why_none = propose(families, selector)
    now = time.time()
    for proposal in proposals:
        proposal.measured = try_once(prometheus, proposal, now, token=token)
        click.echo(f"  {proposal.metric} ({proposal.kind}): {proposal.source}; ran once: {proposal.measured}")
    if why_none:
        click.echo(f"  {why_none}; a placeholder gate is written instead")
    return proposals, why_none


def _render(scaffold: Scaffold, files: dict[Path, str]) -> None:
    from rollout.playbook.scaffold import ENVIRONMENT_SCHEMA, PLAYBOOK_SCHEMA, environment_text, playbook_text
    from rollout.playbook.schema import environment_schema, playbook_schema

    for path in files:
        if path.name == PLAYBOOK_SCHEMA:
            files[path] = json.dumps(playbook_schema(), indent=2) + "\n"
        elif path.name == ENVIRONMENT_SCHEMA:
            files[path] = json.dumps(environment_schema(), indent=2) + "\n"
        elif path.parent.name == "playbooks":
            files[path] = playbook_text(scaffold)
        else:
            files[path] = environment_text(scaffold, path.stem)


def _validated(files: dict[Path, str], playbook_name: str, envs: list[str]) -> None:
    """Load every file as `rollout validate` and the engine would, from a scratch folder, before any
    is written where the user will find it."""
    from rollout.playbook.environments import load_environment
    from rollout.playbook.load import load_playbook
    from rollout.util.errors import RolloutError

    with tempfile.TemporaryDirectory(prefix="rollout-init-") as scratch:
        for path, text in files.items():
            (Path(scratch) / path).parent.mkdir(parents=True, exist_ok=True)
            (Path(scratch) / path).write_text(text)
        try:
            load_playbook(Path(scratch) / "playbooks" / f"{playbook_name}.yaml")
            for env in envs:
                load_environment(env, Path(scratch) / "environments")
        except RolloutError as exc:
            # name the files as they would have been written (relative to --dir), not the scratch folder
            said = str(exc).replace(str(Path(scratch)) + os.sep, "")
            raise ConfigError(f"the files init made do not validate; nothing written: {said}") from exc


def _write(path: Path, text: str) -> None:
    from rollout.util.outfile import write_output

    write_output(path, text, "--dir")
