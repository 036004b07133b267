"""People's requests on a running step (``rollout pause``, ``continue``, ``promote``) end with the
run they were made in: a rollback clears every pending one, and says so."""

from __future__ import annotations

from typing import Any

from rollout.engine.state import StateRecords


def clear_requests(state: StateRecords, environment: str, now: float, who: str | None = None) -> dict[str, Any]:
    """Clear ``environment``'s pending pause and promotion (a rollback ends the run they belonged
    to); record ``requests_cleared`` when there was one. Returns what was cleared (empty: nothing)."""
    control = state.control(environment)
    if not control.pending:
        return {}
    cleared: dict[str, Any] = {}
    if control.paused:
        cleared["paused"] = True
    if control.promote:
        cleared["promotion"] = control.promote_kind
    with state.tx() as db:
        state.set_control(environment, now, db=db, paused=False, promote=None)
        state.audit(environment, "requests_cleared", now, db=db, who=who, run=control.run_id, **cleared)
    return cleared


def cleared_since(state: StateRecords, environment: str, since_action: tuple[str, ...]) -> list[dict[str, Any]]:
    """The ``requests_cleared`` entries recorded after the last of ``since_action`` (a flag-off)."""
    entries = state.audit_log(environment, limit=200)
    found: list[dict[str, Any]] = []
    for entry in reversed(entries):
        if entry["action"] == "requests_cleared":
            found.append(entry)
        elif entry["action"] in since_action:
            break
    return list(reversed(found))
