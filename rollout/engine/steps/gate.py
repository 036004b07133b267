"""The ``gate`` step: observe a gate set for a while (0: judge its window once)."""

from __future__ import annotations

from rollout.engine.context import RunContext
from rollout.engine.observe import observe
from rollout.engine.steps.base import DONE, StepResult, accept_hold, observation_result
from rollout.playbook.model import GateStep, Playbook


def run(ctx: RunContext, step: GateStep, label: str) -> StepResult:
    interval = step.interval or ctx.playbook.interval
    current = ctx.state.get(ctx.env_name)
    if not ctx.read_only and current.observe_started is not None and accept_hold(ctx, label, current.percent):
        return StepResult(DONE, "hold accepted by approval")
    started = None if ctx.read_only else current.observe_started
    if started is None:
        started = ctx.clock.time()
        if not ctx.read_only:
            ctx.state.update(ctx.env_name, started, observe_started=started)
    # a one-shot gate (observe: 0) judges the gate's full window, not the time since the step began
    if step.observe == 0:
        started = ctx.clock.time() - ctx.playbook.gates[step.gate].window
    result = observe(ctx, step.gate, step.observe, interval, step.max_hold, started, label, current.percent)
    return observation_result(result, step.on_hold_timeout)


def describe(step: GateStep, playbook: Playbook | None = None) -> str:
    return f"gate {step.gate!r}" + (f" observed for {step.observe:g}s" if step.observe else "")
