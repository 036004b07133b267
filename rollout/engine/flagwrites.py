"""Write-ahead for the flag: every write is announced in the audit before it is made.

A flag write and the state that records it cannot share a transaction (the flag lives in the
target's store, the state in ours), so the order is what makes the audit complete:

1. ``flag_intent`` (the value about to be written, and a ``write`` id) is committed;
2. the flag is written;
3. the state change and the entry saying it was done (``ramp``, ``configure``, ``flag_off``,
   ``flag_off_failed``, carrying the same ``write`` id) commit in one transaction.

A crash before 1 changed nothing at the target; between 1 and 3 the intent names the value the
target may now hold, and the next ``advance`` writes it again (the writes are idempotent) and
says so. So every value the target ever saw is named in the audit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from rollout.engine.crashpoints import crash_point
from rollout.engine.state import StateRecords, check_before_flag_write
from rollout.util.clock import Clock

INTENT = "flag_intent"
#: audit actions that complete an intent (they carry its ``write`` id); ``drill_*``: ``rollout drill``'s
COMPLETIONS = ("ramp", "configure", "flag_off", "flag_off_failed", "drill_armed", "drill_off", "drill_restored")


def announce(
    state: StateRecords,
    environment: str,
    clock: Clock,
    by: str,
    *,
    flag: bool | None,
    percent: int | None,
    db: Any = None,
    **detail: Any,
) -> str:
    """Record (committed, or in ``db``'s transaction) that ``by`` is about to write ``flag``/``percent``;
    returns the write's id for the entry that completes it."""
    write = uuid.uuid4().hex[:12]
    state.audit(environment, INTENT, clock.time(), db=db, write=write, by=by, flag=flag, percent=percent, **detail)
    return write


def interrupted(state: StateRecords, environment: str) -> dict[str, Any] | None:
    """The last announced write that nothing completed (a run died between announcing and recording
    it), or None."""
    entries = state.audit_log(environment, limit=50)
    done = {e["detail"].get("write") for e in entries if e["action"] in COMPLETIONS}
    for entry in reversed(entries):
        if entry["action"] == INTENT:
            return None if entry["detail"].get("write") in done else entry
    return None


def after(by: str, stage: str, tag: object = None) -> None:
    """A crash point between the stages of ``by``'s write (``intent``, ``write``, ``record``)."""
    crash_point(f"{by}.after_{stage}", tag)


class Announced:
    """A flag-store guard (called inside the store's lock, just before the write) that runs ``check``
    (which may refuse the write) and then records the intent; :attr:`write` is its id afterwards.
    :attr:`in_tx` (which may refuse it too) runs in the very transaction that records the intent, so
    what it read cannot change before the intent is committed (a waved phase's exposure budget)."""

    def __init__(
        self,
        state: StateRecords,
        environment: str,
        clock: Clock,
        by: str,
        *,
        flag: bool | None,
        percent: int | None,
        check: Callable[[], None] | None = None,
        **detail: Any,
    ) -> None:
        self._state, self._environment, self._clock, self.by = state, environment, clock, by
        self._check, self._flag, self._percent, self._detail = check, flag, percent, detail
        self.write: str | None = None

    #: run (with the transaction) where the intent is recorded; may refuse the write (None: no such check)
    in_tx: Callable[[Any], None] | None = None

    def __call__(self) -> None:
        if self._check is not None:
            self._check()
        in_tx = self.in_tx
        if in_tx is None:
            self.write = self._announce(None)
        else:
            with self._state.tx() as db:
                in_tx(db)
                self.write = self._announce(db)
        after(self.by, "intent", self._percent)
        check_before_flag_write(self._environment)

    def _announce(self, db: Any) -> str:
        return announce(
            self._state,
            self._environment,
            self._clock,
            self.by,
            flag=self._flag,
            percent=self._percent,
            db=db,
            **self._detail,
        )
