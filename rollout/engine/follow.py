"""Following a run an agent drives, from the record: the same step headers, flag writes and verdict
lines a terminal's own ``advance`` prints, read from the audit and the verdicts as they are written.
Stopping to follow (Ctrl-C) does not stop the run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rollout.engine import handoff
from rollout.engine.context import Reporter
from rollout.engine.outcome import RunOutcome
from rollout.engine.state import StateRecords
from rollout.incident.words import audit_words
from rollout.playbook.model import Phase, step_label
from rollout.util.clock import Clock

#: audit entries a follower says in its own words (the rest are told with :func:`audit_words`)
_QUIET = {
    "flag_intent",
    "step_done",
    "resumed",
    "phase_started",
    "phase_completed",
    "agent_run_ended",
    "incident_report",
    "agent_released",
}


class Follower:
    """Prints what happens to one environment after ``since`` (audit id, verdict id)."""

    def __init__(
        self, state: StateRecords, phase: Phase, environment: str, out: Reporter, since: tuple[int, int]
    ) -> None:
        self.state, self.phase, self.environment, self.out = state, phase, environment, out
        self.audit_id, self.verdict_id = since
        self._shown: dict[tuple[str | None, int | None], str] = {}

    def poll(self) -> None:
        """Print what was recorded since the last poll."""
        for entry in self.state.audit_after(self.environment, self.audit_id):
            self.audit_id = int(entry["id"])
            self._audit(entry["action"], entry["detail"], entry["actor"])
        for v in self.state.verdicts_after(self.environment, self.verdict_id):
            self.verdict_id = int(v["id"])
            key = (v["step"], v["percent"])
            if self._shown.get(key) != v["verdict"]:
                self._shown[key] = v["verdict"]
                where = f"{v['step']}" + (f" at {v['percent']}%" if v["percent"] is not None else "")
                self.out.line(f"  {v['verdict'].upper()} {where}: {v['summary']}")

    def _audit(self, action: str, detail: dict[str, object], actor: str) -> None:
        if action == "step_started":
            labels = [step_label(s, i) for i, s in enumerate(self.phase.steps)]
            index = labels.index(str(detail.get("step"))) if detail.get("step") in labels else 0
            self.out.step(index, len(self.phase.steps), str(detail.get("step")), str(detail.get("kind")))
        elif action == "ramp":
            self.out.line(f"  {audit_words(action, dict(detail))}", "bold")
        elif action == "agent_took_over":
            self.out.line(f"  {actor} took the run over ({detail.get('why')})", "yellow")
        elif action in ("flag_off", "flag_off_failed", "flag_off_unconfirmed"):
            self.out.line(f"{action.replace('_', ' ')}: {audit_words(action, dict(detail))}", "bold red")
        elif action not in _QUIET:
            self.out.line(f"  {action.replace('_', ' ')}: {audit_words(action, dict(detail))}")


def follow(
    state: StateRecords,
    request_id: int,
    follower: Follower,
    clock: Clock,
    not_taken_within: float,
    poll: float = 0.2,
    on_wait: Callable[[str], None] | None = None,
) -> RunOutcome | None:
    """Follow the requested run to its end and return how it ended (what the agent recorded), or
    None when no agent took it within ``not_taken_within`` seconds (it is cancelled then, so no
    agent starts it later)."""
    started = clock.monotonic()
    while True:
        follower.poll()
        request = handoff.get(state, request_id)
        if request is None:
            return None
        if request.finished_at is not None and request.outcome is not None:
            follower.poll()
            return outcome_of(request.outcome)
        late = request.taken_by is None and clock.monotonic() - started > not_taken_within
        if late and handoff.cancel(state, request_id, clock.time()):
            return None
        if on_wait is not None and request.taken_by is None:
            on_wait(f"waiting for an agent to take the run ({clock.monotonic() - started:.0f}s)")
        clock.sleep(poll)


def outcome_of(data: dict[str, Any]) -> RunOutcome | None:
    """How a handed-over run ended, from what the agent recorded on its request (None: cancelled)."""
    if data.get("status") == "cancelled":
        return None
    known = {"status", "exit_code", "message", "environment", "phase", "step", "flag_off_at"}
    return RunOutcome(
        str(data.get("status")),
        int(data.get("exit_code", 70)),
        str(data.get("message")),
        str(data.get("environment")),
        data.get("phase"),
        data.get("step"),
        details={k: v for k, v in data.items() if k not in known},
    )
