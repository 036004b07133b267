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
from typing import Any, Protocol

from rollout.checks.service_api import ServiceClient
from rollout.engine import hints
from rollout.engine.context import RunContext
from rollout.engine.flagwrites import after, announce
from rollout.engine.outcome import FlagOff, RunOutcome
from rollout.engine.requests import clear_requests
from rollout.engine.state import ROLLED_BACK, LeaseLost, StateRecords
from rollout.flags import FlagBackend, FlagWriteError, is_on
from rollout.incident.report import collect, write_report
from rollout.playbook.environments import Resolved
from rollout.playbook.model import FlagSpec
from rollout.targets import wait_service_applied
from rollout.util.clock import Clock
from rollout.util.errors import EXIT_ROLLED_BACK, RolloutError, described


class RolledBackMeanwhile(RolloutError):
    """A rollback happened while this run was going; it stops here and changes nothing more."""

    exit_code = 1


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
        raise FlagWriteError(f"the flag backend {self._what} cannot be read: {self._problem}")

    def state(self) -> tuple[bool, int | None]:
        raise FlagWriteError(f"the flag backend {self._what} cannot be read: {self._problem}")

    def set(
        self, enabled: bool | None = None, percent: int | None = None, guard: Callable[[], None] | None = None
    ) -> dict[str, str]:
        raise FlagWriteError(
            f"the flag backend {self._what} cannot be reached: {self._problem}; the flag may not have changed"
        )

    def replace(self, values: Mapping[str, str], guard: Callable[[], None] | None = None) -> dict[str, str]:
        return self.set(guard=guard)

    def close(self) -> None:
        pass


def open_or_unreachable(open_backend: Callable[[], FlagBackend], spec: FlagSpec) -> FlagBackend:
    """The flag backend ``open_backend`` opens, or, when it cannot even be opened (its database down,
    its token missing, anything it raises), an :class:`UnreachableFlags` saying why: a rollback and
    an incident report go on without it."""
    try:
        return open_backend()
    except Exception as exc:  # noqa: BLE001 - the kill path never stops at its backend
        shown = described(exc)
        return UnreachableFlags(spec.variable, spec.percent_variable, f"{spec.backend} flag backend", shown)


class Lines(Protocol):
    """Where a flag-off tells a person what it does (a :class:`Reporter` is one)."""

    def line(self, text: str, style: str = "") -> None: ...


class _Silent:
    def line(self, text: str, style: str = "") -> None:
        """Says nothing."""


@dataclass
class OffPath:
    """What a flag-off works with, for an automatic one (from a run's context) and a person's
    (``rollout rollback``, the dashboard) alike."""

    env: str
    flags: FlagBackend
    state: StateRecords
    clock: Clock
    out: Lines
    #: the target that confirms the flag off (None: it could not be built)
    target: Any
    resolved: Resolved
    service: ServiceClient
    incidents_dir: Path
    notify: Callable[..., None]
    #: how long the target has to report the flag off
    confirm_within: float = 5.0

    @classmethod
    def of(cls, ctx: RunContext) -> OffPath:
        return cls(
            ctx.env_name,
            ctx.flags,
            ctx.state,
            ctx.clock,
            ctx.out,
            ctx.target,
            ctx.resolved,
            ctx.service,
            ctx.incidents_dir,
            ctx.notify,
        )


@dataclass(frozen=True)
class SwitchedOff:
    """How a flag-off went: ``off`` None when the write itself failed; ``problem`` why it is not
    confirmed (the write's failure, or the target not reporting the flag off); the report written."""

    off: FlagOff | None
    problem: str | None
    report: Path | None

    def outcome(self, env: str, phase: str | None, step: str | None, summary: str) -> RunOutcome:
        """An automatic flag-off as a run's outcome (exit 1 either way; the message says which)."""
        if self.off is None:
            return RunOutcome(
                "flag_off_failed",
                EXIT_ROLLED_BACK,
                f"{summary}; the flag-off FAILED, the feature may still be ON: {self.problem}",
                env,
                phase,
                step,
            )
        return RunOutcome(
            ROLLED_BACK,
            EXIT_ROLLED_BACK,
            f"{summary}; flag turned off" + unconfirmed_note(self.problem),
            env,
            phase,
            step,
            self.off,
        )


def switch_off(
    path: OffPath,
    reason: str,
    *,
    automatic: bool,
    verdict: dict[str, Any] | None = None,
    who: str | None = None,
    step: str | None = None,
) -> SwitchedOff:
    """The one flag-off path: write the flag off (:func:`kill`; nothing waits before it), hint each
    replica to re-read it where that helps (:mod:`rollout.engine.hints`), then see the target take
    it in, write the incident report and tell the webhooks, whatever the write did. A write that
    failed is recorded (``flag_off_failed``), reported and notified as loudly as a flag-off that
    the target did not confirm."""
    off: FlagOff | None = None
    problem: str | None
    try:
        off = kill(path.env, path.flags, path.state, path.clock, reason, automatic=automatic, verdict=verdict, who=who)
    except LeaseLost:
        raise
    except Exception as exc:  # noqa: BLE001 - kill recorded it; the report and the notice follow whatever it was
        shown = described(exc)
        problem = f"the flag write failed: {shown}"
        path.out.line(f"FLAG-OFF FAILED for {path.env}: {shown}", "bold red")
    else:
        hints.after_flag_off(path.flags, path.target, path.resolved)  # after the write, never before it
        path.out.line(f"flag turned off for {path.env}" + (f": {step} failed" if step else ""), "bold red")
        problem = record_confirmation(path, off, who=who)
    _end_requests(path, who)
    report = write_incident(path, who, read_flags=path.flags.env_file is not None)
    try:
        path.notify(
            "flag_off",
            step=step,
            percent=off.previous_percent if off else None,
            automatic=automatic,
            summary=(
                f"{reason}; THE FLAG-OFF FAILED, the feature may still be ON: {problem}"
                if off is None
                else reason + unconfirmed_note(problem)
            ),
            confirmed=problem is None,
            write_failed=off is None,
            incident_report=str(report) if report else None,
        )
    except Exception as exc:  # noqa: BLE001 - a notice that cannot be sent never undoes the flag-off
        path.out.line(f"warning: the flag-off could not be notified: {type(exc).__name__}: {exc}", "bold red")
    return SwitchedOff(off, problem, report)


def _end_requests(path: OffPath, who: str | None) -> None:
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
        data = collect(path.state, path.resolved, path.flags, path.service, now, read_flags=read_flags)
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
