"""What a run of the engine works with, passed explicitly (no global state)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rollout.checks.client import ServiceClient
from rollout.engine.state import StateRecords
from rollout.flags import FlagBackend
from rollout.gates import Verdict
from rollout.notify import Notifier
from rollout.playbook.environments import Resolved
from rollout.playbook.model import Phase, Playbook
from rollout.providers import MetricSources
from rollout.targets import Target
from rollout.util.clock import Clock
from rollout.util.errors import EXIT_HELD, RolloutError

if TYPE_CHECKING:  # where the run's project is; it builds the run's context
    from rollout.engine.project import Project


class Reporter(Protocol):
    """Where the engine tells a person what it does (human console, or silent for --json)."""

    def step(self, index: int, total: int, label: str, kind: str) -> None: ...
    def line(self, text: str, style: str = "") -> None: ...
    def check(self, name: str, ok: bool, detail: str) -> None: ...
    def verdict(self, label: str, verdict: Verdict) -> None: ...
    def progress(self, total: int, description: str) -> AbstractContextManager[Callable[[int], None]]: ...
    def waiting(self, text: str) -> None: ...
    def done_waiting(self) -> None: ...


@dataclass(frozen=True)
class Held:
    """Why a ramp may not move up now, and when it next may (None: not known)."""

    why: tuple[str, ...]
    opens_at: float | None = None
    #: what holds it: ``window`` (windows, freezes, start; an agent only guarding) or ``exposure`` (a
    #: waved phase's exposure budget); its wait is audited as ``KIND_wait``
    kind: str = "window"
    #: when it may move up, in words, when :attr:`opens_at` is not known (None: "not within a year")
    until: str | None = None

    def words(self) -> str:
        return "; ".join(self.why)


class MayNotMoveUp(RolloutError):
    """A ramp write refused in the transaction that would announce it (another region's write took
    the exposure budget first): nothing was written; the ramp holds, guarded, and looks again."""

    exit_code = EXIT_HELD


@dataclass
class RunContext:
    """Everything one ``advance``/``watch``/``gate`` run needs."""

    playbook: Playbook
    playbook_path: Path
    phase: Phase
    resolved: Resolved
    state: StateRecords
    flags: FlagBackend
    service: ServiceClient
    clock: Clock
    out: Reporter
    #: the target: the flag it applied, its health, and its own checks, scenarios and load
    target: Target
    #: where gate metrics come from
    metrics: MetricSources
    #: resolves a playbook's ``${REFERENCE}`` (tokens, headers) and teaches the value to the redactor
    secret: Callable[[str], str]
    approve: bool = False
    commit: str | None = None
    #: where incident reports go (default: beside the state database)
    incidents_dir: Path = Path(".rollout/incidents")
    #: the git repository promote steps work in
    repo: Path = Path(".")
    #: --override-evidence: promote without the required evidence, for this reason (recorded)
    override_evidence: str | None = None
    #: `rollout gate`: measure and judge only; the environment's state is not moved
    read_only: bool = False
    #: the environment's status when this run began (a run after a hold-timeout pause sees awaiting_approval)
    resumed_from: str | None = None
    #: filled as the run goes: check results and verdicts, for --json and JUnit
    results: list[dict[str, Any]] = field(default_factory=list)
    #: the playbook's webhooks (None: no notifications)
    notifier: Notifier | None = None
    #: the incident report written by the last flag-off of this run
    incident_report: Path | None = None
    #: the observation going on in this process (:class:`rollout.engine.observe.Watching`), kept
    #: between looks: what a person was last shown, the metrics' limits
    watching: Any = None
    #: the step this process last announced (printed and recorded as started)
    started_step: int | None = None
    #: (step, ramp position) of the last flag write made by this process
    wrote: tuple[str, int] | None = None
    #: why a ramp may not move up at a time (a window closed, a freeze; an agent only guarding), or None: it may
    schedule: Callable[[float], Held | None] | None = None
    #: (step, percentage in force, what holds it) of the wait under way for a window or the exposure
    #: budget (said once), or None
    window_wait: tuple[str, int | None, str] | None = None
    #: checked in the transaction that announces a ramp write of this percentage (with that
    #: transaction): raises :class:`MayNotMoveUp` when it may not be written after all (None: no check)
    write_check: Callable[[Any, int], None] | None = None
    #: where the run's things are (None: a context built without one, as :mod:`rollout.testing` does)
    project: Project | None = None
    #: the always-on agent driving this run (its name), or None: a terminal's ``advance``
    agent: str | None = None

    def may_move_up(self) -> Held | None:
        """Why the ramp may not move up now (and when it next may), or None: it may."""
        return self.schedule(self.clock.time()) if self.schedule is not None else None

    #: --override-window: move up whatever the windows, freezes and start_at say, for this reason (audited)
    override_window: str | None = None

    def notify(self, event: str, **details: Any) -> None:
        """Tell the playbook's webhooks, in the background (never before or instead of a flag write)."""
        if self.notifier is not None:
            current = self.state.get(self.env_name)
            details.setdefault("phase", self.phase.name)
            details.setdefault("percent", current.percent if current.flag else None)
            self.notifier.fire(event, self.env_name, **details)

    @property
    def env_name(self) -> str:
        return self.resolved.env.name
