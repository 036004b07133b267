"""The flag-off write itself: the shortest part of the kill path, and the guard that lets it win.

:func:`kill` takes the flag store's file lock (held for milliseconds by any writer), marks the environment
``rolled_back`` *inside* that lock, writes the flag off, and records why. It never waits for the writer lock an
``advance`` holds, so a rollback always gets through, and because a ramp's flag write re-checks the status inside
the same file lock (:func:`guard_not_rolled_back`), the rollback also wins.

A write that fails is recorded (``flag_off_failed``) before the error reaches anyone, and the environment is
marked ``rolled_back`` all the same, so a ramp running elsewhere stops at its next evaluation instead of ramping on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rollout.engine.flagwrites import after, announce
from rollout.engine.outcome import FlagOff
from rollout.engine.state import ROLLED_BACK, LeaseLost, StateRecords
from rollout.flags import FlagBackend, FlagWriteError, is_on
from rollout.util.clock import Clock
from rollout.util.errors import EXIT_ROLLED_BACK, RolloutError, described


class RolledBackMeanwhile(RolloutError):
    """A rollback happened while this run was going; it stops here and changes nothing more."""

    exit_code = EXIT_ROLLED_BACK


def _percent(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() else None


def kill(
    environment: str,
    flags: FlagBackend,
    state: StateRecords,
    clock: Clock,
    reason: str,
    *,
    automatic: bool,
    verdict: dict[str, Any] | None = None,
    who: str | None = None,
) -> FlagOff:
    """Turn the flag off for ``environment`` now and record it.

    ``previous_flag``/``previous_percent`` are the flag as the engine last knew it at the target
    (what it wrote and saw applied, or what the target reported when a flag-off was not obeyed),
    read inside the lock at no extra cost; what the backend held is added when it differs."""
    known: dict[str, Any] = {}

    def mark() -> None:
        row = state.get(environment)
        known.update(flag=row.flag, percent=row.percent)
        # rolled back and the write announced in one commit, inside the flag store's lock
        with state.tx() as db:
            state.update(environment, clock.time(), db=db, status=ROLLED_BACK, reason=reason, flag=False)
            known["write"] = announce(state, environment, clock, "flag_off", flag=False, percent=None, db=db)
        # no local lease check here: the token was checked as this commit was made, and a flag-off that
        # follows it late is harmless (refusing it would leave rolled_back recorded with the flag on)
        after("flag_off", "intent")

    try:
        before = flags.set(enabled=False, guard=mark)
    except LeaseLost:
        raise  # an agent that lost its lease writes nothing more, not even a failure: the new owner guards
    except Exception as exc:  # whatever the backend raised: record it before the error reaches the person
        problem = described(exc)
        with state.tx() as db:
            if not known:  # the write failed before its guard ran: the intent is recorded all the same
                state.update(environment, clock.time(), db=db, status=ROLLED_BACK, reason=reason)
            else:  # the guard recorded the flag off before the write; it failed, so the flag is as it was
                state.update(environment, clock.time(), db=db, flag=known["flag"], percent=known["percent"])
            state.audit(
                environment,
                "flag_off_failed",
                clock.time(),
                db=db,
                who=who,
                automatic=automatic,
                reason=reason,
                problem=problem,
                backend=flags.describe(),
                verdict=verdict,
                write=known.get("write"),
            )
        if isinstance(exc, RolloutError):
            raise
        raise FlagWriteError(f"{problem}; the flag may not have changed") from exc
    after("flag_off", "write")
    at = clock.time()
    # a backend whose off is its first request (Unleash) does not know what it held before it
    told = isinstance(before, Mapping) and flags.flag_variable in before
    held_on, held_percent = (
        is_on(before.get(flags.flag_variable, "false")) if told else False,
        _percent(before.get(flags.percent_variable)) if told else None,
    )
    was_on = held_on if known.get("flag") is None else bool(known["flag"])
    percent = held_percent if known.get("flag") is None else known.get("percent")
    extra = (
        {}
        if not told or (was_on, percent) == (held_on, held_percent) or (not was_on and not held_on)
        else {
            "backend_held": f"{'on' if held_on else 'off'}"
            + (f" at {held_percent}%" if held_percent is not None else "")
        }
    )
    state.audit(
        environment,
        "flag_off",
        at,
        who=who,
        automatic=automatic,
        reason=reason,
        previous_flag=was_on,
        previous_percent=percent,
        verdict=verdict,
        write=known.get("write"),
        **extra,
    )
    return FlagOff(at, was_on, percent)


def guard_not_rolled_back(environment: str, state: StateRecords) -> Callable[[], None]:
    """A flag-store guard that refuses a write once the environment was rolled back."""

    def guard() -> None:
        current = state.get(environment)
        if current.status == ROLLED_BACK:
            raise RolledBackMeanwhile(
                f"environment {environment} was rolled back meanwhile ({current.reason}); nothing more was changed"
            )

    return guard
