"""The one flag-off path (:func:`switch_off`), for an automatic flag-off and a person's alike, and how it went.

:func:`switch_off` writes the flag off first (:func:`~rollout.engine.flagoff.kill`: inside the flag store's lock,
nothing waits before it), then hints the replicas, waits (bounded) for the target to confirm, ends the run's pending
requests, writes the incident report and notifies, whatever the write did (:mod:`rollout.engine.aftermath`).
The parts live in small modules; this one re-exports them, so ``rollout.engine.killswitch`` names the whole path:
the write and its guard (:mod:`rollout.engine.flagoff`), the stand-in of a backend that cannot be opened
(:mod:`rollout.engine.unreachable`), what a flag-off works with (:mod:`rollout.engine.offpath`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout.engine import hints
from rollout.engine.aftermath import end_requests, record_confirmation, unconfirmed_note, write_incident
from rollout.engine.flagoff import RolledBackMeanwhile, guard_not_rolled_back, kill
from rollout.engine.offpath import Lines, OffPath, _Silent
from rollout.engine.outcome import FlagOff, RunOutcome
from rollout.engine.state import ROLLED_BACK, LeaseLost
from rollout.engine.unreachable import UnreachableFlags, open_or_unreachable
from rollout.util.errors import EXIT_ROLLED_BACK, described

__all__ = [
    "Lines",
    "OffPath",
    "RolledBackMeanwhile",
    "SwitchedOff",
    "UnreachableFlags",
    "_Silent",
    "guard_not_rolled_back",
    "kill",
    "open_or_unreachable",
    "record_confirmation",
    "switch_off",
    "unconfirmed_note",
    "write_incident",
]


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
    end_requests(path, who)
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
