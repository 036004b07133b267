"""Who drives an environment now, asked in one place: the overview's "driven by" column and the
environment page read it, and the change detector re-asks it for :func:`candidates` every few
seconds (a driver can go away without writing anything: a terminal killed, a lease expiring).

Today the only driver is a terminal's ``rollout advance`` holding the environment's writer lock.
"""

from __future__ import annotations

import socket
from typing import Any

from rollout.engine.state import StateRecords, pid_alive

NOBODY: dict[str, Any] = {"kind": None, "who": "nobody"}


def driver(state: StateRecords, env: str) -> dict[str, Any]:
    """``{"kind": "terminal", "who": "terminal ana@host pid 123"}`` while an advance holds ``env``'s writer
    lock, else ``{"kind": None, "who": "nobody"}`` (a holder whose process is gone drives nothing; ``gone``
    then says who it was)."""
    holder = state.holder(env)
    if holder is None:
        return NOBODY
    who = f"terminal {holder['owner']} pid {holder['pid']}"
    if holder["host"] == socket.gethostname() and not pid_alive(holder["pid"]):
        return {**NOBODY, "gone": who}
    return {"kind": "terminal", "who": who}


def candidates(state: StateRecords) -> list[str]:
    """The environments someone may be driving (a lock row), to re-ask :func:`driver` about."""
    return state.locked()
