"""Where a run's things are, and a run's context built from them: the playbook, the environments,
the state store, the secrets (each one taught to the command's redactor as it is resolved)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollout.checks.client import ServiceClient
from rollout.engine.context import Reporter, RunContext
from rollout.engine.killswitch import Lines, OffPath, open_or_unreachable
from rollout.engine.pgstate import PgStateStore
from rollout.engine.state import StateRecords, StateStore, actor
from rollout.flags import FlagBackend, make_flags
from rollout.notify import Notifier
from rollout.playbook.environments import (
    Environment,
    Resolved,
    is_secret_name,
    load_environment,
    reference_value,
    resolve,
)
from rollout.playbook.load import load_playbook
from rollout.playbook.model import Playbook
from rollout.promote import PromotionError, checked_out_commit, open_repo
from rollout.providers import MetricSources
from rollout.targets import make_target, own_providers
from rollout.util.clock import Clock
from rollout.util.errors import ConfigError
from rollout.util.redact import Redactor
from rollout.util.yamlfile import secret_field

if TYPE_CHECKING:  # gitpython is imported where a repository is opened: most commands never open one
    import git


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
        return reference_value(
            raw,
            f"{self.playbook_path}",
            self.secrets_file or env.secrets_file,
            found=lambda _name, value: self.redactor.learn([value]),
        )

    def resolve(self, env: Environment, overrides: Mapping[str, str] | None = None) -> Resolved:
        """``env`` resolved (see :func:`~rollout.playbook.environments.resolve`), its secrets taught to :attr:`redactor`."""
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

    def repo(self) -> git.Repo | None:
        """The git repository at :attr:`repo_path`, where promote steps work and ``gate``, ``advance``
        and ``status`` read their commits. ``None`` for the default ``.`` outside any repository; a
        ``--repo`` given elsewhere that is no repository is a :class:`ConfigError` (exit 2)."""
        try:
            return open_repo(self.repo_path)
        except PromotionError as exc:
            if self.repo_path == Path("."):
                return None
            raise ConfigError(
                f"--repo {self.repo_path}: not a git repository (commits are read there; "
                "`rollout gate --commit SHA` names one instead)"
            ) from exc

    def repo_commit(self) -> str | None:
        """The commit checked out in :meth:`repo`: the one ``gate`` and ``advance`` record (``None``
        without a repository, or in one with no commit yet)."""
        repo = self.repo()
        if repo is None:
            return None
        with repo:  # closes git's helper processes now, not whenever the object is collected
            return checked_out_commit(repo)

    def flags(self, playbook: Playbook, env: Environment) -> FlagBackend:
        """The environment's flag backend, as the playbook names it."""
        return make_flags(playbook.flag, env, self.state_path.parent, lambda raw: self.secret(raw, env))


#: ``open_context(commit=RECORDED)``: the commit under test is the one the environment last promoted,
#: or, before any promotion, the one checked out in the project's ``--repo``
RECORDED = "<recorded>"


@contextmanager
def open_context(
    project: Project,
    env_name: str,
    clock: Clock,
    out: Reporter,
    *,
    approve: bool = False,
    read_only: bool = False,
    drain: bool = True,
    phase_name: str | None = None,
    commit: str | None = RECORDED,
    override_evidence: str | None = None,
    state: StateRecords | None = None,
    override_window: str | None = None,
) -> Iterator[RunContext]:
    """Load and resolve everything a run of ``env_name`` needs, once; close it afterwards.

    ``phase_name`` runs another phase's steps in this environment (``rollout gate --phase``);
    ``commit`` is the commit under test (default :data:`RECORDED`: the one the environment last
    promoted, else the one checked out in ``--repo``; None: none known);
    ``override_evidence`` lets a promote step go without its evidence, for that reason;
    ``override_window`` lets a ramp move up outside its windows and freezes, for that reason. ``state``
    is a store to share (the agent's, used from its worker threads; left open). With
    ``drain`` False the webhook deliveries still going are left to the caller
    (``ctx.notifier.drain()`` after it has printed its answer)."""
    playbook = project.playbook()
    phase = playbook.phase_for(env_name)
    if phase is None:
        known = ", ".join(e for p in playbook.phases for e in p.environments)
        raise ConfigError(
            f"{project.playbook_path}: no phase runs in environment {env_name!r} (phases run in: {known})"
        )
    if phase_name is not None:
        chosen = next((p for p in playbook.phases if p.name == phase_name), None)
        if chosen is None:
            raise ConfigError(f"--phase: no phase {phase_name!r} in {project.playbook_path}")
        phase = chosen
    env = load_environment(env_name, project.environments_dir)
    resolved = project.resolve(env)
    # every reference is resolved now, so the redactor knows each value before anything is printed
    project.learn_secrets(playbook, env)
    # read-only runs (plan) record nothing, so they need no commit (and no repository)
    checked_out = project.repo_commit() if commit == RECORDED and not read_only else None
    shared = state
    state = shared or project.state(read_only=read_only)
    if commit == RECORDED:
        commit = state.get(env_name).commit_sha or checked_out
    service = ServiceClient(env.service_url, resolved.admin_token)

    def secret(raw: str) -> str:
        return project.secret(raw, env)

    for step in phase.steps:  # a check's header that is not set stops the run before it starts
        for check in getattr(step, "checks", None) or []:
            for value in getattr(check, "headers", {}).values():
                secret(value)
    flags = make_flags(playbook.flag, env, project.state_path.parent, secret)
    target = make_target(playbook, service, flags, resolved)
    metrics = MetricSources.build(playbook, service, secret, own_providers(service))
    notifier = Notifier(playbook.notify, secret, resolved.redactor(), project.state) if playbook.notify else None
    ctx = RunContext(
        playbook,
        project.playbook_path,
        phase,
        resolved,
        state,
        flags,
        service,
        clock,
        out,
        target,
        metrics,
        secret,
        approve=approve,
        incidents_dir=project.incidents_dir,
        repo=project.repo_path,
        commit=commit,
        override_evidence=override_evidence,
        notifier=notifier,
        override_window=override_window,
        project=project,
    )
    try:
        yield ctx
    finally:
        if notifier is not None and drain:
            notifier.drain()
        metrics.close()
        flags.close()
        service.close()
        if shared is None:
            state.close()


def resolved_or_from_file(project: Project, env: Environment, flags: FlagBackend) -> Resolved:
    """The environment resolved; if a secret is missing, what the env file holds (the kill path and
    its report must never depend on secrets being at hand)."""
    try:
        return project.resolve(env)
    except ConfigError:
        try:
            values = flags.read()
        except Exception:  # noqa: BLE001 - a backend that cannot be read knows no values either
            values = {}
        return Resolved(env, values, tuple(v for k, v in values.items() if is_secret_name(k) and v)).sharing(
            project.redactor
        )


@dataclass
class Kill:
    """What a flag-off opened from the project works with: its path, the phase recorded, and the
    notifier it made (None: none, or the caller's ``notify`` tells)."""

    path: OffPath
    phase: str | None
    notifier: Notifier | None


@contextmanager
def open_off_path(
    project: Project,
    env_name: str,
    clock: Clock,
    lines: Lines,
    *,
    who: str | None = None,
    state: StateRecords | None = None,
    notify: Callable[..., None] | None = None,
    confirm_within: float = 5.0,
    playbook: Playbook | None = None,
) -> Iterator[Kill]:
    """Everything a flag-off of ``env_name`` needs, opened from ``project`` and closed afterwards:
    its flag backend (one that cannot even be opened makes the write fail, loudly, as any other
    failed write), its target (built over such a backend too: the write fails before anything asks
    the target to confirm, and the incident report still gets what the target says of itself), the
    environment resolved (or what its env file holds when a secret
    is missing: the kill path never depends on secrets being at hand), the state store (``state``,
    or one of its own) and, unless ``notify`` tells the webhooks, a notifier of its own. ``playbook``:
    the one loaded already (a run turning other regions off), else it is read from its file."""
    playbook = playbook or project.playbook()
    env = load_environment(env_name, project.environments_dir)
    project.learn_secrets(playbook, env)  # a token quoted back by a backend, or pasted in the reason
    store = state if state is not None else project.state()
    try:
        # its database down, its token missing, anything it raises: the flag-off fails, loudly
        flags: FlagBackend = open_or_unreachable(lambda: project.flags(playbook, env), playbook.flag)
        notifier = (
            Notifier(
                playbook.notify,
                lambda raw: project.secret(raw, env),
                project.redactor,
                project.state,
                actor=who or actor(),
            )
            if playbook.notify and notify is None
            else None
        )
        try:
            resolved = resolved_or_from_file(project, env, flags)
            service = ServiceClient(env.service_url, resolved.admin_token, timeout=3.0)
            try:
                phase = store.get(env_name).phase

                def told(event: str, **details: Any) -> None:
                    if notifier is not None:
                        notifier.fire(event, env_name, phase=phase, **details)

                # built over an UnreachableFlags too: its write fails before any confirmation is asked
                # (nothing reads the flag through it), but the incident report still gets what the
                # target says of itself (the embedded service's samples of the errors, its impact)
                try:
                    target = make_target(playbook, service, flags)
                except Exception:  # noqa: BLE001 - no target: the flag-off goes on, unconfirmed
                    target = None
                path = OffPath(
                    env_name,
                    flags,
                    store,
                    clock,
                    lines,
                    target,
                    resolved,
                    service,
                    project.incidents_dir,
                    notify or told,
                    confirm_within,
                )
                yield Kill(path, phase, notifier)
            finally:
                service.close()
        finally:
            flags.close()
    finally:
        if state is None:
            store.close()
