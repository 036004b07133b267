"""Which environments need an agent, and which of them this agent takes or gives up: pure.

An environment needs an agent when a run was handed to the agents (``drive``), when its phase
completed with a bake time not over yet and the flag on (``bake``), or when a terminal's run died
with the flag on at an observing step (``guard``: its gates keep being evaluated and a breach turns
the flag off, but it does not move up until someone runs ``rollout advance``).

Ownership spreads over the live agents: each takes environments nobody holds while it holds fewer
than its fair share (the needing environments over the live agents, rounded up), and gives up a
few when it holds clearly more. An environment whose lease ran out (its agent died or froze) is
taken at once whatever the share: an unguarded launch is worse than an uneven spread, which the
next rounds even out.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

from rollout.engine.state import AGENT, COMPLETED, INTERRUPTED, RUNNING, EnvState

DRIVE, BAKE, GUARD = "drive", "bake", "guard"


def needs(
    row: EnvState,
    requested: bool,
    bake: float | None,
    observing: bool,
    terminal_alive: bool,
    now: float,
) -> str | None:
    """What ``row``'s environment needs of an agent now (:data:`DRIVE`, :data:`BAKE`,
    :data:`GUARD`), or None. ``requested``: a run request waits for it; ``bake``: its phase's
    bake time in seconds; ``observing``: its current step is a ramp or a gate; ``terminal_alive``:
    a terminal's advance holds its writer lock."""
    if terminal_alive:
        return None  # a person's advance drives it; an agent never writes beside one
    if requested or (row.driver == AGENT and row.status == RUNNING):
        return DRIVE
    if (
        row.status == COMPLETED
        and bake is not None
        and row.flag
        and row.completed_at is not None
        and now < row.completed_at + bake
    ):
        return BAKE
    if row.status in (RUNNING, INTERRUPTED) and row.driver != AGENT and row.flag and observing:
        return GUARD
    return None


@dataclass(frozen=True)
class Plan:
    """What this agent does with ownership this round."""

    claim: list[str]
    shed: list[str]


def plan(
    agent: str,
    needing: Iterable[str],
    mine: set[str],
    held_by_others: set[str],
    expired: set[str],
    live_agents: int,
    busy: set[str] = frozenset(),  # type: ignore[assignment]
    recently_shed: set[str] = frozenset(),  # type: ignore[assignment]
) -> Plan:
    """This round's claims and releases (see the module docstring). ``expired``: needing
    environments whose last lease ran out without a release (a dead or frozen owner); ``busy``:
    mine with an evaluation under way (never given up mid-write); ``recently_shed``: given up by
    this agent lately (left to the others, unless they have run out)."""
    needing = sorted(set(needing))
    fair = math.ceil(len(needing) / max(1, live_agents)) if needing else 0
    free = [e for e in needing if e not in mine and e not in held_by_others]
    # each agent walks the free ones in its own order, so agents starting together spread at once
    free.sort(key=lambda e: hashlib.sha256(f"{agent}/{e}".encode()).hexdigest())
    claim = [e for e in free if e in expired and e not in recently_shed]
    room = fair - len(mine) - len(claim)
    claim += [e for e in free if e not in claim and e not in recently_shed][: max(0, room)]
    excess = len(mine) - fair
    shed: list[str] = []
    if live_agents > 1 and excess > max(1, fair // 10):
        givable = sorted(e for e in mine if e not in busy and e in needing)
        shed = givable[: max(1, excess // 2)]
    return Plan(claim, shed)
