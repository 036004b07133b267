"""The most important path in the system: turning the flag off.

Short on purpose: it takes the flag store's file lock (held for milliseconds by any writer), marks
the environment ``rolled_back`` *inside* that lock, writes the flag off, and records why. It never
waits for the writer lock an ``advance`` holds, so a rollback always gets through, and because a
ramp's flag write re-checks the status inside the same file lock, the rollback also wins.

A write that fails is recorded (``flag_off_failed``) before the error reaches anyone, and the
environment is marked ``rolled_back`` all the same, so a ramp running elsewhere stops at its next
evaluation instead of ramping on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout.util.clock import Clock
from rollout.engine.state import ROLLED_BACK, StateRecords
from rollout.util.errors import RolloutError
from rollout.flags import FlagBackend, FlagWriteError, is_on


class RolledBackMeanwhile(RolloutError):
    """A rollback happened while this run was going; it stops here and changes nothing more."""

    exit_code = 1


@dataclass(frozen=True)
class FlagOff:
    at: float
    previous_flag: bool
    previous_percent: int | None


def _percent(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() else None


def kill(environment: str, flags: FlagBackend, state: StateRecords, clock: Clock, reason: str, *,
         automatic: bool, verdict: dict[str, Any] | None = None, who: str | None = None) -> FlagOff:
    """Turn the flag off for ``environment`` now and record it.

    ``previous_flag``/``previous_percent`` are the flag as the engine last knew it at the target
    (what it wrote and saw applied, or what the target reported when a flag-off was not obeyed),
    read inside the lock at no extra cost; what the backend held is added when it differs."""
    known: dict[str, Any] = {}

    def mark() -> None:
        row = state.get(environment)
        known.update(flag=row.flag, percent=row.percent)
        state.update(environment, clock.time(), status=ROLLED_BACK, reason=reason, flag=False)

    try:
        before = flags.set(enabled=False, guard=mark)
    except RolloutError as exc:  # the backend failed: record it before the error reaches the person
        if not known:  # the write failed before its guard ran: the intent is recorded all the same
            state.update(environment, clock.time(), status=ROLLED_BACK, reason=reason)
        state.audit(environment, "flag_off_failed", clock.time(), who=who, automatic=automatic, reason=reason,
                    problem=str(exc), backend=flags.describe(), verdict=verdict)
        raise
    at = clock.time()
    held_on, held_percent = is_on(before.get(flags.flag_variable, "false")), _percent(before.get(flags.percent_variable))
    was_on = held_on if known.get("flag") is None else bool(known["flag"])
    percent = held_percent if known.get("flag") is None else known.get("percent")
    extra = {} if (was_on, percent) == (held_on, held_percent) or not was_on and not held_on else \
        {"backend_held": f"{'on' if held_on else 'off'}" + (f" at {held_percent}%" if held_percent is not None else "")}
    state.audit(environment, "flag_off", at, who=who, automatic=automatic, reason=reason, previous_flag=was_on,
                previous_percent=percent, verdict=verdict, **extra)
    return FlagOff(at, was_on, percent)


def guard_not_rolled_back(environment: str, state: StateRecords) -> Callable[[], None]:
    """A flag-store guard that refuses a write once the environment was rolled back."""
    def guard() -> None:
        current = state.get(environment)
        if current.status == ROLLED_BACK:
            raise RolledBackMeanwhile(
                f"environment {environment} was rolled back meanwhile ({current.reason}); nothing more was changed")
    return guard


class UnreachableFlags:
    """The flag backend of a kill that could not even be opened (its database down, its token
    missing): every write fails with why, so the one flag-off path records, reports and notifies
    the failure as it does any other."""

    env_file: Path | None = None

    def __init__(self, flag_variable: str, percent_variable: str, what: str, problem: str) -> None:
        self.flag_variable, self.percent_variable = flag_variable, percent_variable
        self._what, self._problem = what, problem

    def describe(self) -> str:
        return self._what

    def read(self) -> dict[str, str]:
        return {}

    def state(self) -> tuple[bool, int | None]:
        raise FlagWriteError(f"the flag backend {self._what} cannot be read: {self._problem}")

    def set(self, enabled: bool | None = None, percent: int | None = None,
            guard: Callable[[], None] | None = None) -> dict[str, str]:
        raise FlagWriteError(f"the flag backend {self._what} cannot be reached: {self._problem}; the flag may "
                             "not have changed")

    def replace(self, values: Mapping[str, str], guard: Callable[[], None] | None = None) -> dict[str, str]:
        return self.set(guard=guard)

    def close(self) -> None:
        pass
