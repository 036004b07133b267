"""Who is driving an environment now: the one question every command that writes the flag outside
a rollout's own steps (``rollout drill``) asks before it starts. Today the answer is an
``advance`` holding the environment's writer lock; an agent's lease is the next thing it names."""

from __future__ import annotations

import socket

from rollout.engine.state import StateRecords, pid_alive


def who_drives(state: StateRecords, environment: str) -> str | None:
    """Who is driving ``environment`` (an advance holding its writer lock), in words; None: nobody.
    A lock left by a process that is gone on this host drives nothing."""
    holder = state.holder(environment)
    if holder is None or (holder["host"] == socket.gethostname() and not pid_alive(holder["pid"])):
        return None
    return f"{holder['owner']} (pid {holder['pid']} on {holder['host']})"
