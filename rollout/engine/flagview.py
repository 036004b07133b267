"""An environment's flag as a person must read it (what the service reports it applied, before what
rollout wrote), and the phase facts that depend on it: which steps turn the flag on, where a
resumed phase goes on, the status to show."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rollout.checks.client import ServiceClient
from rollout.engine.driver import who_drives
from rollout.engine.project import Project, resolved_or_from_file
from rollout.engine.state import COMPLETED, INTERRUPTED, RUNNING, EnvState, StateRecords
from rollout.flags import FlagBackend, FlagStore, is_on
from rollout.playbook.environments import Environment, load_environment
from rollout.playbook.model import ConfigureStep, Phase, Playbook, RampStep
from rollout.targets import make_target
from rollout.util.errors import RolloutError


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


#: shown for a running step a person paused (``rollout pause``): the record says running
PAUSED = "paused"


def shown_status(state: StateRecords, row: EnvState, flag_on: bool | None, turns_flag_on: bool) -> str:
    """The status a person should read: ``interrupted`` for a run whose process is gone, ``paused``
    for a running step a person holds, never ``completed`` for a phase that turns the feature on
    while its flag is off."""
    if row.status == RUNNING:
        if who_drives(state, row, time.time()) is None:  # neither a live terminal nor an agent's lease
            return INTERRUPTED
        control = state.control(row.name)
        if control.paused and control.belongs_to(row):
            return PAUSED
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

_Read = tuple[bool | None, int | None, str | None, str | None, bool]


class FlagReads:
    """Each environment's flag as last read, reused for ``ttl`` seconds (real time: it spares the
    flag service and the target, it is no window). The dashboard keeps one: a page polling every
    second, a Prometheus scrape and any number of visitors then cost one read of each per second."""

    def __init__(self, ttl: float = 1.0, now: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self._now = ttl, now
        self._reads: dict[str, tuple[float, _Read]] = {}
        self._lock = threading.Lock()

    def get(self, env: str, read: Callable[[], _Read]) -> _Read:
        with self._lock:
            kept = self._reads.get(env)
            if kept is not None and self._now() - kept[0] < self.ttl:
                return kept[1]
        fresh = read()
        with self._lock:
            self._reads[env] = (self._now(), fresh)
        return fresh

    def forget(self) -> None:
        """After an action: the next view reads again."""
        with self._lock:
            self._reads.clear()


def flag_view(
    project: Project, playbook: Playbook | None, state: StateRecords, row: EnvState, reads: FlagReads | None = None
) -> FlagView:
    """The flag of ``row``'s environment as a person must read it: what the service *reports* it
    applied, when it can report it (the embedded service, ``target.flag_state``, ``flag.read``, a
    fleet's replicas); else what the backend holds now; else what the state recorded. After a
    flag-off the service did not obey, this says "on" as the service does. With ``reads``, a read
    of the last second is reused. Each read is bounded (the backend's ``flag.timeout``, the
    service's :data:`REPORT_TIMEOUT_S`)."""
    flag, percent, source, by, turns_on = (
        _read_flag(project, playbook, row)
        if reads is None
        else reads.get(row.name, lambda: _read_flag(project, playbook, row))
    )
    if source is None:
        flag, percent = row.flag, row.percent
    return FlagView(flag, percent, source, shown_status(state, row, flag, turns_on), by)


def _read_flag(project: Project, playbook: Playbook | None, row: EnvState) -> _Read:
    env = flags = None
    try:
        env = load_environment(row.name, project.environments_dir)
        flags = project.flags(playbook, env) if playbook else (FlagStore(env.env_file) if env.env_file else None)
    except Exception:  # noqa: BLE001 - still show what is known when a file is broken or a token is missing
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
    return flag, percent, source, by, turns_on


def _reported_flag(
    project: Project, playbook: Playbook | None, env: Environment, flags: FlagBackend
) -> tuple[bool, int | None] | None:
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
