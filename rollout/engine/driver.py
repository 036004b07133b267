"""Who drives an environment now, so a person never has to wonder: a terminal's ``advance`` (the
writer lock, held by a live process) or an always-on agent (a fresh lease on a run handed to the
agents), or nobody."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from rollout.engine import leases
from rollout.engine.state import EnvState, StateRecords, pid_alive


@dataclass(frozen=True)
class Driver:
    """Who drives an environment: ``kind`` is ``terminal`` or ``agent``; ``name`` says which."""

    kind: str
    name: str
    #: since when (the lock's or the lease's start)
    since: float
    #: the lease's fencing token (an agent's), else None
    token: int | None = None

    def words(self) -> str:
        return f"{self.kind} {self.name}"


def terminal(state: StateRecords, environment: str) -> Driver | None:
    """The live process holding ``environment``'s writer lock (a terminal's or CI's ``advance``)."""
    holder = state.holder(environment)
    if holder is None or (holder["host"] == socket.gethostname() and not pid_alive(holder["pid"])):
        return None
    return Driver("terminal", f"{holder['owner']} (pid {holder['pid']} on {holder['host']})", holder["acquired_at"])


def agent(state: StateRecords, environment: str, now: float) -> Driver | None:
    """The agent holding a fresh lease on ``environment``."""
    lease = leases.holder(state, environment, now)
    if lease is None:
        return None
    return Driver("agent", lease.owner, lease.acquired_at, lease.token)


def who_drives(state: StateRecords, row: EnvState, now: float) -> Driver | None:
    """Who drives ``row``'s environment now: a terminal's advance, else an agent, else nobody."""
    return terminal(state, row.name) or agent(state, row.name, now)
