"""Who drives an environment now, asked in one place: the overview's "driven by" column and the
environment page read it, and the change detector re-asks it for :func:`candidates` every few
seconds (a driver can go away without writing anything: a terminal killed, a lease expiring).

A driver is a terminal's ``rollout advance`` holding the environment's writer lock, or an always-on
agent holding a fresh lease on it (:mod:`rollout.engine.driver` decides; this shapes it for pages).
"""

from __future__ import annotations

import socket
import time
from typing import Any

from rollout.engine import leases
from rollout.engine.driver import agent
from rollout.engine.state import StateRecords, pid_alive

NOBODY: dict[str, Any] = {"kind": None, "who": "nobody"}


def driver(state: StateRecords, env: str) -> dict[str, Any]:
    """``{"kind": "terminal", "who": "terminal ana@host (pid 123 on host)"}`` while an advance holds
    ``env``'s writer lock, ``{"kind": "agent", "who": "agent agent-a", "token": 3}`` while an agent holds
    its lease, else ``{"kind": None, "who": "nobody"}`` (a lock holder whose process is gone drives
    nothing; ``gone`` then says who it was)."""
    holder = state.holder(env)
    if holder is not None:
        who = f"terminal {holder['owner']} pid {holder['pid']}"
        if holder["host"] != socket.gethostname() or pid_alive(holder["pid"]):
            return {"kind": "terminal", "who": who}
    lease = agent(state, env, time.time())
    if lease is not None:
        return {"kind": "agent", "who": lease.words(), "token": lease.token}
    return {**NOBODY, "gone": who} if holder is not None else NOBODY


def candidates(state: StateRecords) -> list[str]:
    """The environments someone may be driving (a lock row, or a lease row), to re-ask :func:`driver` about."""
    return sorted({*state.locked(), *(row.environment for row in leases.all_leases(state))})
