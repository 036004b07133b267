"""What follows a flag-off write, each step said and never raised: the target's confirmation, the end of
people's pending requests on the run, and the incident report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollout.engine.offpath import OffPath
from rollout.engine.outcome import FlagOff
from rollout.engine.requests import clear_requests
from rollout.incident.report import collect, write_report
from rollout.targets import wait_service_applied


def end_requests(path: OffPath, who: str | None) -> None:
    """The run is over: people's pending requests on it end with it (after the flag write, never
    before it; a failure here is said, never raised)."""
    try:
        cleared = clear_requests(path.state, path.env, path.clock.time(), who=who)
    except Exception as exc:  # noqa: BLE001 - the flag is off already; what follows must not stand in its way
        path.out.line(f"warning: the pending pause or promotion could not be cleared: {exc}", "bold red")
        return
    if cleared:
        what = " and ".join(
            (["a pause"] if cleared.get("paused") else [])
            + ([f"a promotion ({cleared['promotion']})"] if cleared.get("promotion") else [])
        )
        path.out.line(f"cleared {what} requested on the run that was rolled back")


def write_incident(path: OffPath, who: str | None = None, read_flags: bool = True) -> Path | None:
    """Write the pre-filled incident report now; a failure here is reported, never raised. Without
    ``read_flags`` the flag in it is the record's (a flag-off does not wait on its backend twice)."""
    try:
        now = path.clock.time()
        data = collect(path.state, path.resolved, path.flags, path.target, now, read_flags=read_flags)
        written = write_report(path.incidents_dir, path.env, data, now)
    except Exception as exc:  # noqa: BLE001 - the report must never stand between a flag-off and its notice
        path.out.line(f"warning: the incident report could not be written: {exc}", "bold red")
        return None
    path.state.audit(path.env, "incident_report", path.clock.time(), who=who, path=str(written))
    path.out.line(f"incident report: {written}", "bold")
    return written


def record_confirmation(path: OffPath, off: FlagOff, who: str | None = None) -> str | None:
    """Wait (bounded) until the target reports the flag off; record ``flag_off_confirmed`` or, loudly,
    ``flag_off_unconfirmed`` (also when the target has no way to report it). When the target
    answers but is still on, what it reports becomes the environment's recorded flag: status, the
    dashboard and the next flag-off then show the feature on, as it is. Returns the problem, or
    None when confirmed."""
    seen: dict[str, Any] = {}
    try:
        problem = (
            "the target could not be built"
            if path.target is None
            # against what was written (off), not a read of the backend: it may be what failed
            else wait_service_applied(
                path.flags, path.target, path.clock, path.confirm_within, seen, expected=(False, None)
            )
        )
    except Exception as exc:  # noqa: BLE001 - a confirmation that cannot be completed is not one
        problem = f"the confirmation could not be completed ({type(exc).__name__}: {exc})"
    now = path.clock.time()
    if problem:
        path.out.line(f"WARNING: the flag was written off but the target has NOT confirmed it: {problem}", "bold red")
        if seen.get("flag_enabled") is not None:
            path.state.update(path.env, now, flag=bool(seen["flag_enabled"]), percent=seen.get("rollout_percent"))
        path.state.audit(
            path.env,
            "flag_off_unconfirmed",
            now,
            who=who,
            problem=problem,
            backend=path.flags.describe(),
            flag_variable=path.flags.flag_variable,
            reported_flag=seen.get("flag_enabled"),
            reported_percent=seen.get("rollout_percent"),
        )
        return problem
    path.out.line(f"the service confirmed the flag off {(now - off.at) * 1000:.0f} ms after the write")
    path.state.audit(path.env, "flag_off_confirmed", now, who=who, after_ms=round((now - off.at) * 1000, 1))
    return None


def unconfirmed_note(problem: str | None) -> str:
    """What an outcome message adds when the target did not confirm a flag-off."""
    if not problem:
        return ""
    return f"; WARNING: the target has NOT confirmed the flag off, the feature may still be on: {problem}"
