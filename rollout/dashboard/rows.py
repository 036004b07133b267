"""What the dashboard shows of an environment, built from the record without any I/O: its row in the
overview, its phase's steps as a timeline, and a verdict or an audit entry as a line of words.

Everything here is a pure function of what the state store holds (an :class:`EnvState`, the newest
verdict, a few audit entries) and the playbook, so the change detector can rebuild one row when one
environment changes and the environment page can build the same things from a fresh read.
"""

from __future__ import annotations

import re
from typing import Any

from rollout.engine.state import AWAITING_APPROVAL, COMPLETED, HELD, INTERRUPTED, ROLLED_BACK, RUNNING, EnvState
from rollout.incident.words import audit_words
from rollout.playbook.model import GateStep, Phase, Playbook, RampStep, step_label

#: the audit entries an overview row reads besides the environment's own row (the newest of each)
MARKS = ("step_started", "flag_off", "phase_started")

#: statuses in which a step is under way (its clock runs)
UNDER_WAY = (RUNNING, HELD, AWAITING_APPROVAL, INTERRUPTED)

#: the metric fields a page needs to draw and explain an evaluation (the rest stays in the record)
METRIC_FIELDS = ("metric", "verdict", "value", "samples", "target", "alert", "unit", "role", "reason")


#: where a metric's reason gives its figures: ``(29 samples, 2.5s, ...)``, ``(treatment 99 / control 103 samples``
_FIGURES = re.compile(r" \([^()]*\bsamples?\b")


def short_reason(reason: str) -> str:
    """A metric's reason without its figures: ``success_rate 48.28% < alert 90.00%``."""
    found = _FIGURES.search(reason)
    return reason[: found.start()] if found else reason


def deciding(verdict: dict[str, Any]) -> dict[str, Any] | None:
    """The metric that decided ``verdict`` (the first one judged as the whole was, shadows last), or
    None when no metric did (an error, or a stop for a person)."""
    metrics = verdict.get("metrics") or []
    same = [m for m in metrics if m.get("verdict") == verdict["verdict"] and m.get("role") != "shadow"]
    return same[0] if same else None


def verdict_word(verdict: dict[str, Any]) -> dict[str, Any]:
    """The last verdict in a word, with its deciding metric and that metric's reason, short."""
    metric = deciding(verdict)
    summary = str(verdict.get("summary") or "")
    return {
        "id": verdict.get("id"),
        "at": verdict.get("ts"),
        "verdict": verdict["verdict"],
        "metric": metric["metric"] if metric else None,
        "short": short_reason(str(metric.get("reason") or "")) if metric else summary.split(": ", 1)[-1][:160],
    }


def verdict_line(verdict: dict[str, Any]) -> dict[str, Any]:
    """A verdict as the environment page draws and lists it: a point on each metric's chart, a short
    line, and the whole summary behind it."""
    metrics = []
    for m in verdict.get("metrics") or []:
        kept = {k: m.get(k) for k in METRIC_FIELDS}
        if m.get("compare") or m.get("treatment") is not None:  # treatment against control: both cohorts
            kept.update(compare=True, treatment=m.get("treatment"), control=m.get("control"))
        metrics.append(kept)
    line = {**verdict_word(verdict), "percent": verdict.get("percent"), "step": verdict.get("step"), "metrics": metrics}
    if line["metric"] is None:  # an error or a stop for a person: the summary says it, no metric does
        line["summary"] = verdict.get("summary")
    return line


def audit_line(entry: dict[str, Any]) -> dict[str, Any]:
    """An audit entry in words (:func:`rollout.incident.words.audit_words`)."""
    detail = entry.get("detail") or {}
    line = {
        "id": entry["id"],
        "at": entry["ts"],
        "who": entry["actor"],
        "action": entry["action"],
        "words": audit_words(entry["action"], detail),
    }
    # the percentage chart follows the flag's writes
    if entry["action"] == "ramp":
        line["percent"] = detail.get("percent")
    elif entry["action"] == "flag_off":
        line["percent"], line["automatic"] = 0, bool(detail.get("automatic"))
    return line


def _hold_of(step: Any) -> float | None:
    if isinstance(step, RampStep):
        return float(step.hold)
    if isinstance(step, GateStep) and step.observe:
        return float(step.observe)
    return None


def current_step(phase: Phase | None, row: EnvState) -> tuple[int, Any] | None:
    """(index, step) of the step ``row`` is in, when it is in ``phase`` and not past its end."""
    if phase is None or row.phase != phase.name or row.status == COMPLETED or row.step_index >= len(phase.steps):
        return None
    return row.step_index, phase.steps[row.step_index]


def in_force(step: RampStep, row: EnvState) -> int:
    """Index in ``step.percentages`` of the percentage in force (-1: none yet)."""
    index = min(row.ramp_index, len(step.percentages) - 1)
    return index if row.ramp_applied or row.ramp_index >= len(step.percentages) else index - 1


def steps_timeline(playbook: Playbook, phase: Phase | None, row: EnvState) -> list[dict[str, Any]]:
    """The phase's steps, each ``done``, ``current``, ``next`` or ``stopped`` (where a rollback stopped the
    run); a ramp with its percentages (the one in force), the hold and when it started, so a page can run
    the hold's clock.

    A step may carry ``forecast`` (a dict of short strings: the time a ramp step needs to decide); the
    page shows it when present."""
    if phase is None:
        return []
    here = row.phase == phase.name
    finished = here and row.status == COMPLETED
    steps: list[dict[str, Any]] = []
    for index, step in enumerate(phase.steps):
        state = (
            "done"
            if here and (finished or index < row.step_index)
            else ("stopped" if row.status == ROLLED_BACK else "current")
            if here and index == row.step_index
            else "next"
        )
        item: dict[str, Any] = {"label": step_label(step, index), "kind": step.kind, "state": state}
        hold = _hold_of(step)
        if hold is not None:
            item["hold_s"] = hold
            item["interval_s"] = float(getattr(step, "interval", None) or playbook.interval)
        if isinstance(step, RampStep):
            item["percentages"] = list(step.percentages)
            item["in_force"] = (
                in_force(step, row)
                if state in ("current", "stopped")
                else len(step.percentages) - 1
                if state == "done"
                else -1
            )
        if state == "current" and row.status in UNDER_WAY:
            item["observe_started"] = row.observe_started
        steps.append(item)
    return steps


def overview_row(
    key: str,
    project: str,
    order: tuple[int, int],
    playbook: Playbook | None,
    row: EnvState,
    status: str,
    last: dict[str, Any] | None,
    marks: dict[str, dict[str, Any]],
    paused: bool,
    driver: dict[str, Any],
) -> dict[str, Any]:
    """One environment's row in the overview: ``status`` is the status to show (see
    :func:`rollout.engine.flagview.shown_status`), ``last`` the newest verdict, ``marks`` the newest
    audit entry of each of :data:`MARKS`, ``driver`` :func:`rollout.dashboard.driver.driver`."""
    phase = playbook.phase_for(row.name) if playbook is not None else None
    at = current_step(phase, row)
    step = kind = None
    percent = row.percent if row.flag else None
    next_percent = None
    hold_until = None
    if at is not None and phase is not None:
        index, current = at
        step, kind = f"{index + 1}/{len(phase.steps)} {step_label(current, index)}", current.kind
        if isinstance(current, RampStep) and status in UNDER_WAY:
            force = in_force(current, row)
            upcoming = force + 1
            next_percent = current.percentages[upcoming] if upcoming < len(current.percentages) else None
        hold = _hold_of(current)
        if hold is not None and row.observe_started is not None and status in UNDER_WAY:
            hold_until = row.observe_started + hold
    started = marks.get("step_started")
    phase_start = marks.get("phase_started")
    off = marks.get("flag_off")
    in_this_run = off is not None and (phase_start is None or off["ts"] >= phase_start["ts"])
    return {
        "key": key,
        "project": project,
        "env": row.name,
        "order": list(order),
        "phase": row.phase or (phase.name if phase else None),
        "status": status,
        "step": step,
        "step_kind": kind,
        "flag": {True: "on", False: "off", None: None}[row.flag],
        "percent": percent,
        "next_percent": next_percent,
        "last": verdict_word(last) if last else None,
        "step_since": started["ts"] if started and status in UNDER_WAY else None,
        "hold_until": hold_until,
        "driver": driver,
        "paused": paused,
        "flag_off": {
            "at": off["ts"],
            "by": off["actor"],
            "automatic": bool(off["detail"].get("automatic")),
            "reason": str(off["detail"].get("reason") or "")[:300],
        }
        if off is not None and in_this_run and status == ROLLED_BACK
        else None,
    }


def row_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``new`` that differ from ``old`` (all of them for a new row)."""
    if old is None:
        return new
    return {k: v for k, v in new.items() if old.get(k) != v}
