"""``rollout backtest``: what a candidate playbook's gates would have decided, step by step, beside what
was decided. Read-only: the state store is opened for reading, no flag backend is opened, nothing is
written.

Two sources:

* **the state store**: every recorded evaluation of an environment's past runs (a run begins at a
  ``phase_started`` or ``resumed_after_rollback`` entry of the audit log), replayed with
  :mod:`rollout.gates.replay` step by step (each step at its percentage, its limits counted anew);
* **Prometheus over a past range**: the candidate's queries evaluated with ``query`` at each
  interval's time from ``--from`` to ``--to``, the ramp walked as the candidate would have walked it
  (or one percentage held), so a team can ask whether a gate would have caught an incident that
  happened while rollout was not running.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rollout.engine.state import StateRecords
from rollout.gates import FAIL, PASS, StepCounts, judge_readings
from rollout.gates.replay import StepReplay, deciding_metric, replay_step
from rollout.playbook.builtin import EMBEDDED
from rollout.playbook.model import GateSet, GateStep, Phase, Playbook, RampStep, step_label
from rollout.playbook.plugins import target_events
from rollout.providers import MetricSources
from rollout.util.errors import ConfigError
from rollout.util.units import format_duration

#: a Prometheus backtest evaluates at most this many times (a bounded load on the server)
MAX_EVALUATIONS = 10_000
#: audit entries that begin a run
RUN_STARTS = ("phase_started", "resumed_after_rollback")


@dataclass
class RunReplay:
    """One past run, as recorded and as the candidate would have run it."""

    index: int
    source: str
    started: float
    ended: float
    #: rolled_back, completed or unfinished (the record); for a Prometheus range: not_recorded
    recorded: str
    recorded_off_at: float | None
    steps: list[StepReplay]
    #: rolled_back, stopped (a person), completed, held (undecided when the record ends)
    replayed: str = "held"
    replayed_off_at: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """A run that was not rolled back (completed, or still going)."""
        return self.recorded not in ("rolled_back", "not_recorded")

    def verdict_line(self) -> str:
        """The run's comparison in one line: earlier, later, missed, or a healthy run rolled back."""
        if self.recorded == "not_recorded":
            if self.replayed == "rolled_back" and self.replayed_off_at is not None:
                return f"would have rolled back at +{format_duration(self.replayed_off_at - self.started)}"
            return f"would not have rolled back ({self.replayed})"
        if self.recorded == "rolled_back":
            if self.replayed != "rolled_back" or self.replayed_off_at is None or self.recorded_off_at is None:
                return f"would NOT have rolled back (recorded: rolled back); the candidate: {self.replayed}"
            gap = self.recorded_off_at - self.replayed_off_at
            if abs(gap) < 1e-6:
                return "would have rolled back at the same evaluation"
            return f"would have rolled back {format_duration(abs(gap))} {'earlier' if gap > 0 else 'later'}"
        if self.replayed == "rolled_back":
            return f"would have rolled back this healthy run (recorded: {self.recorded})"
        return f"no rollback either way (recorded: {self.recorded}; the candidate: {self.replayed})"

    @property
    def regressed(self) -> bool:
        """The candidate rolls back a healthy run, or misses a recorded rollback."""
        if self.recorded == "rolled_back":
            return self.replayed != "rolled_back"
        return self.healthy and self.replayed == "rolled_back"

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.index,
            "source": self.source,
            "started": self.started,
            "ended": self.ended,
            "recorded": self.recorded,
            "recorded_off_at": self.recorded_off_at,
            "replayed": self.replayed,
            "replayed_off_at": self.replayed_off_at,
            "summary": self.verdict_line(),
            "regressed": self.regressed,
            "notes": self.notes,
            "steps": [
                {
                    "step": s.step,
                    "percent": s.percent,
                    "decided": s.decided,
                    "decided_at": s.decided_at,
                    "not_replayed": s.missing,
                    "from_older_records": s.legacy,
                    "evaluations": s.rows,
                }
                for s in self.steps
            ],
        }


def summary(runs: list[RunReplay]) -> list[str]:
    """The lines a person reads first: rollbacks earlier or later, missed, healthy runs rolled back."""
    lines = []
    healthy = [r for r in runs if r.healthy]
    rolled = [r for r in runs if r.recorded == "rolled_back"]
    if rolled:
        caught = [r for r in rolled if r.replayed == "rolled_back"]
        gaps = [r.recorded_off_at - r.replayed_off_at for r in caught if r.recorded_off_at and r.replayed_off_at]
        said = f"{len(caught)} of {len(rolled)} rolled-back runs would have been rolled back"
        if gaps:
            best = max(gaps)
            said += (
                f" ({format_duration(best)} earlier at best)"
                if best > 0
                else f" ({format_duration(-best)} later at best)"
                if best < 0
                else " (at the same evaluations)"
            )
        lines.append(said)
    if healthy:
        lines.append(
            f"{sum(1 for r in healthy if r.replayed == 'rolled_back')} of {len(healthy)} healthy runs would have "
            "been rolled back"
        )
    for run in runs:
        if run.recorded == "not_recorded":
            lines.append(f"{run.source}: {run.verdict_line()}")
    return lines


def _step_settings(phase: Phase, playbook: Playbook, label: str | None, percent: int | None) -> Any:
    """The candidate's step a recorded one corresponds to: the same label, else its ramp when the
    percentage is one of the ramp's."""
    for i, step in enumerate(phase.steps):
        if isinstance(step, RampStep | GateStep) and step_label(step, i) == label:
            return step
    for step in phase.steps:
        if isinstance(step, RampStep) and percent in step.percentages:
            return step
    return None


def _hold(step: Any) -> float:
    return step.hold if isinstance(step, RampStep) else step.observe


def recorded_runs(state: StateRecords, env: str) -> list[dict[str, Any]]:
    """The environment's runs, oldest first: each with its evaluations (the gate and ramp steps'; not
    ``watch``) and how it ended."""
    audit = state.audit_log(env, limit=1_000_000)
    verdicts = [v for v in state.verdicts(env, limit=1_000_000, readings=True) if v["step"] != "watch"]
    starts = sorted(a["ts"] for a in audit if a["action"] in RUN_STARTS)
    if verdicts and (not starts or verdicts[0]["ts"] < starts[0]):
        starts.insert(0, verdicts[0]["ts"])
    runs = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else float("inf")
        evaluations = [v for v in verdicts if start <= v["ts"] < end]
        if not evaluations:
            continue
        entries = [a for a in audit if start <= a["ts"] < end]
        offs = [a for a in entries if a["action"] == "flag_off"]
        outcome = (
            "rolled_back"
            if offs
            else "completed"
            if any(a["action"] == "phase_completed" for a in entries)
            else "unfinished"
        )
        runs.append(
            {
                "started": start,
                "ended": evaluations[-1]["ts"],
                "evaluations": evaluations,
                "outcome": outcome,
                "off_at": offs[0]["ts"] if offs else None,
                "ramp_starts": {
                    (a["detail"].get("step"), a["detail"].get("percent")): a["ts"]
                    for a in entries
                    if a["action"] == "ramp"
                },
            }
        )
    return runs


def _groups(evaluations: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive evaluations of one step at one percentage."""
    groups: list[list[dict[str, Any]]] = []
    for v in evaluations:
        if groups and (groups[-1][-1]["step"], groups[-1][-1]["percent"]) == (v["step"], v["percent"]):
            groups[-1].append(v)
        else:
            groups.append([v])
    return groups


def _settle(run: RunReplay) -> RunReplay:
    """How the candidate would have ended the run, from its steps in order."""
    for step in run.steps:
        if step.decided == "fail":
            run.replayed, run.replayed_off_at = "rolled_back", step.decided_at
            return run
        if step.decided == "stop":
            run.replayed = "stopped"
            return run
        if step.decided in ("undecided", "hold_timeout"):
            run.replayed = "held" if step.decided == "undecided" else "hold_timeout"
            run.notes.append(
                f"{step.step} at {step.percent}%: the candidate had not decided when the recorded step ended"
                if step.decided == "undecided"
                else f"{step.step} at {step.percent}%: the candidate would have held past its max_hold"
            )
            return run
    run.replayed = "completed" if run.recorded == "completed" else "held"
    return run


def backtest_store(playbook: Playbook, phase: Phase, state: StateRecords, env: str) -> list[RunReplay]:
    """Every recorded run of ``env`` replayed with ``playbook``'s gates (its phase for ``env``)."""
    replays = []
    for n, run in enumerate(recorded_runs(state, env), start=1):
        result = RunReplay(n, "state", run["started"], run["ended"], run["outcome"], run["off_at"], [])
        for group in _groups(run["evaluations"]):
            first = group[0]
            step = _step_settings(phase, playbook, first["step"], first["percent"])
            if step is None:
                result.notes.append(f"{first['step']}: no such step in the candidate's phase {phase.name}; skipped")
                continue
            started = run["ramp_starts"].get((first["step"], first["percent"]), first["ts"])
            events = target_events(playbook)
            replay = replay_step(playbook.gates[step.gate], group, _hold(step), step.max_hold, started, events)
            result.steps.append(replay)
            if replay.missing:
                result.notes += [f"{replay.step} at {replay.percent}%: not replayed: {m}" for m in replay.missing]
            if replay.legacy:
                result.notes.append(
                    f"{replay.step} at {replay.percent}%: from records older than readings (values and samples only)"
                )
        result.notes = list(dict.fromkeys(result.notes))
        replays.append(_settle(result))
    return replays


def _ramp_of(phase: Phase) -> RampStep:
    ramp = next((s for s in phase.steps if isinstance(s, RampStep)), None)
    if ramp is None:
        raise ConfigError(f"phase {phase.name} has no ramp step to walk over the range")
    return ramp


def backtest_prometheus(
    playbook: Playbook,
    phase: Phase,
    sources: MetricSources,
    start: float,
    end: float,
    percent: int | None = None,
    recorded: list[dict[str, Any]] | None = None,
) -> RunReplay:
    """The candidate's ramp walked over ``start``..``end`` on its providers' past data (each metric's
    query at each evaluation's time): from the first percentage, a pass after the hold moves on, a fail
    ends it (or ``percent`` held over the whole range). Embedded metrics have no past: left out."""
    ramp = _ramp_of(phase)
    gates = playbook.gates[ramp.gate]
    kept = [m for m in gates.metrics if m.provider != EMBEDDED]
    notes = [f"{m.metric}: the embedded service keeps no past; not replayed" for m in gates.metrics if m not in kept]
    if not kept or all(m.role == "shadow" for m in kept):
        raise ConfigError(f"gate {ramp.gate!r} has no provider metric to read over a past range (only embedded ones)")
    candidate: GateSet = gates.model_copy(update={"metrics": kept})
    interval = ramp.interval or playbook.interval
    if end <= start:
        raise ConfigError("--to must be after --from")
    if (end - start) / interval > MAX_EVALUATIONS:
        raise ConfigError(
            f"--from..--to at an interval of {format_duration(interval)} is over {MAX_EVALUATIONS} evaluations"
        )
    percentages = [percent] if percent is not None else list(ramp.percentages)
    label = ramp.name or "ramp"
    run = RunReplay(1, f"prometheus {format_duration(end - start)} range", start, end, "not_recorded", None, [])
    run.notes = notes
    index, step_start, counts = 0, start, StepCounts()
    rows: list[dict[str, Any]] = []
    t = start
    decided, decided_at = "undecided", None
    while t <= end + 1e-9 and index < len(percentages):
        pct = percentages[index]
        elapsed = t - step_start
        readings = sources.read(candidate, t, pct, cap=max(elapsed, interval))
        verdict = judge_readings(candidate, readings, elapsed, counts)
        near = _recorded_near(recorded or [], t, interval)
        rows.append(
            {
                "ts": t,
                "elapsed": elapsed,
                "step": label,
                "percent": pct,
                "recorded": near["verdict"] if near else None,
                "replayed": verdict.verdict,
                "recorded_summary": near["summary"] if near else None,
                "replayed_summary": verdict.summary,
                "deciding": deciding_metric(verdict),
                "recorded_metrics": {},
                "replayed_metrics": {m.metric: m.verdict for m in verdict.metrics},
                "metrics": [m.as_dict() for m in verdict.metrics],
            }
        )
        ended = None
        if verdict.verdict == FAIL:
            ended = "fail"
        elif verdict.stop:
            ended = "stop"
        elif percent is None and verdict.verdict == PASS and elapsed >= ramp.hold:
            ended = "pass"
        elif percent is None and elapsed >= ramp.hold + ramp.max_hold:
            ended = "hold_timeout"
        if ended is not None:
            run.steps.append(StepReplay(label, pct, rows, ended, t, [], False))
            rows = []
            if ended != "pass":
                decided, decided_at = ended, t
                break
            index, step_start, counts = index + 1, t, StepCounts()
        t += interval
    if rows:
        run.steps.append(StepReplay(label, percentages[index], rows, "undecided", None, [], False))
    if decided == "fail":
        run.replayed, run.replayed_off_at = "rolled_back", decided_at
    elif decided == "stop":
        run.replayed = "stopped"
    elif decided == "hold_timeout":
        run.replayed = "hold_timeout"
    else:
        run.replayed = "completed" if index >= len(percentages) else "held"
    return run


def _recorded_near(recorded: list[dict[str, Any]], t: float, interval: float) -> dict[str, Any] | None:
    """The recorded evaluation nearest ``t`` within half an interval, if rollout was running then."""
    near = [v for v in recorded if abs(v["ts"] - t) <= interval / 2]
    return min(near, key=lambda v: abs(v["ts"] - t)) if near else None
