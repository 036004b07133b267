"""The ``scenario`` step: one of the target's error scenarios (the embedded service's, through its sandbox)."""

from __future__ import annotations

from rollout.checks import CheckResult
from rollout.engine.context import RunContext
from rollout.engine.steps.base import StepResult, checks_result
from rollout.playbook.model import Playbook
from rollout.playbook.plugins import StepKind
from rollout.targets.embedded.steps import ScenarioStep


def run(ctx: RunContext, step: ScenarioStep, label: str) -> StepResult:
    own = getattr(ctx.target, "scenario", None)
    if own is None:
        return checks_result(ctx, [CheckResult(label, False, "this target has no scenarios")])
    waits = getattr(ctx.target, "scenario_wait", lambda name: "the scenario")
    ctx.out.waiting(f"{label}: waiting for {waits(step.scenario)} (at most {step.within:g}s)")
    try:
        result = own(step.scenario, label, ctx.clock, step.within)
    finally:
        ctx.out.done_waiting()
    return checks_result(ctx, [result])


def describe(step: ScenarioStep, playbook: Playbook | None = None) -> str:
    return step.scenario.replace("_", " ")


class Kind(StepKind):
    """The ``scenario`` step kind."""

    name = "scenario"
    config = ScenarioStep
    run = staticmethod(run)
    describe = staticmethod(describe)
