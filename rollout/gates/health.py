"""Health actions: what a trigger does to one metric's result. ``on_guardrail`` (a guardrail's
breach), ``on_srm`` (a sample-ratio mismatch) and ``on_no_traffic`` (no traffic at all past a grace
period) each ``rollback``, ``hold`` or ``warn``. The defaults are what rollout did before them: a
breach and a mismatch fail (the flag goes off), no traffic holds. A warning is recorded, notified and
shown and never decides, so it can hide nothing: every other metric still decides as before.
"""

from __future__ import annotations

from dataclasses import replace

from rollout.gates.results import FAIL, HOLD, MetricResult, Reading
from rollout.playbook.model import GateSet, MetricGate
from rollout.util.units import format_duration


def on_breach(result: MetricResult, action: str, trigger: str) -> MetricResult:
    """``result`` after ``action`` for its failure (``trigger`` names the key, for its reason):
    ``rollback`` leaves the fail; ``hold`` makes it a hold that says so; ``warn`` marks it."""
    if result.verdict != FAIL or result.action is not None or action == "rollback":
        return result
    if action == "hold":
        note = f"; {trigger}: hold (the step holds; the flag stays)"
        return replace(result, verdict=HOLD, reason=result.reason + note, action="hold")
    return replace(result, reason=f"{result.reason} ({trigger}: warn)", action="warn")


def no_traffic(
    gates: GateSet, spec: MetricGate, reading: Reading, result: MetricResult, elapsed: float | None
) -> MetricResult:
    """``result`` after the metric's ``on_no_traffic`` action, when its provider answered with no
    sample at all and the step is past its grace. ``rollback`` fails it; ``warn`` marks it (it still
    holds: no data is never a pass); ``hold``, the default, leaves it as it is."""
    action, grace = gates.no_traffic(spec)
    if (
        action == "hold"
        or spec.role == "shadow"
        or elapsed is None
        or elapsed < grace
        or reading.error is not None
        or reading.samples > 0
        or result.verdict != HOLD
    ):
        return result
    said = f"{spec.metric}: no traffic {format_duration(elapsed)} into the step (no_traffic_grace {format_duration(grace)})"
    if action == "rollback":
        return replace(result, verdict=FAIL, reason=f"{said}; on_no_traffic: rollback", action="rollback")
    return replace(result, reason=f"{said} (on_no_traffic: warn; it holds: no data is never a pass)", action="warn")
