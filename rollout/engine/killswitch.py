"""The most important path in the system: turning the flag off.

Short on purpose: it takes the flag store's file lock (held for milliseconds by any writer), marks
the environment ``rolled_back`` *inside* that lock, writes the flag off, and records why. It never
waits for the writer lock an ``advance`` holds, so a rollback always gets through, and because a
ramp's flag write re-checks the status inside the same file lock, the rollback also wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rollout.clock import Clock
from rollout.engine.state import ROLLED_BACK, StateStore
from rollout.errors import RolloutError
from rollout.flags import FlagBackend, is_on


class RolledBackMeanwhile(RolloutError):
    """A rollback happened while this run was going; it stops here and changes nothing more."""

    exit_code = 1


@dataclass(frozen=True)
class FlagOff:
    at: float
    previous_flag: bool
    previous_percent: int | None


def kill(environment: str, flags: FlagBackend, state: StateStore, clock: Clock, reason: str, *,
         automatic: bool, verdict: dict[str, Any] | None = None, who: str | None = None) -> FlagOff:
    """Turn the flag off for ``environment`` now and record it."""
    def mark() -> None:
        state.update(environment, clock.time(), status=ROLLED_BACK, reason=reason, flag=False)

    try:
        before = flags.set(enabled=False, guard=mark)
    except RolloutError as exc:  # the backend failed: record it before the error reaches the person
        state.audit(environment, "flag_off_failed", clock.time(), who=who, automatic=automatic, reason=reason,
                    problem=str(exc), backend=flags.describe(), verdict=verdict)
        raise
    at = clock.time()
    was_on = is_on(before.get(flags.flag_variable, "false"))
    percent_raw = before.get(flags.percent_variable)
    percent = int(percent_raw) if percent_raw and percent_raw.isdigit() else None
    state.audit(environment, "flag_off", at, who=who, automatic=automatic, reason=reason, previous_flag=was_on,
                previous_percent=percent, verdict=verdict)
    return FlagOff(at, was_on, percent)


def guard_not_rolled_back(environment: str, state: StateStore):  # noqa: ANN201 - returns a guard callable
    """A flag-store guard that refuses a write once the environment was rolled back."""
    def guard() -> None:
        current = state.get(environment)
        if current.status == ROLLED_BACK:
            raise RolledBackMeanwhile(
                f"environment {environment} was rolled back meanwhile ({current.reason}); nothing more was changed")
    return guard
