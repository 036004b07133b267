"""A health action's ``warn``: recorded with its verdict, shown, and notified (``health_warning``)
once per metric and step, never on every evaluation. It never touches the flag."""

from __future__ import annotations

from rollout.engine.context import RunContext
from rollout.gates import Verdict


def announce_warnings(ctx: RunContext, verdict: Verdict, step: str, percent: int | None) -> None:
    """Say and notify each warning of ``verdict`` that the step's previous evaluation did not have
    (call it before the verdict is recorded)."""
    if not verdict.warnings or ctx.read_only:
        return
    before: set[str] = set()
    for recorded in reversed(ctx.state.verdicts(ctx.env_name, limit=20)):
        if recorded["step"] == step and recorded["percent"] == percent:
            before = {m["metric"] for m in recorded["metrics"] if m.get("action") == "warn"}
            break
    for result in verdict.warnings:
        if result.metric in before:
            continue
        where = f"{step}" + (f" at {percent}%" if percent is not None else "")
        ctx.state.audit(
            ctx.env_name, "health_warning", ctx.clock.time(), step=step, percent=percent, warning=result.reason
        )
        ctx.out.line(f"  WARNING {where}: {result.reason} (warn: the flag is not touched)", "yellow")
        ctx.notify("health_warning", step=step, summary=f"{where}: {result.reason}")
