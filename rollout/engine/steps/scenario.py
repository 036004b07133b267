"""The ``scenario`` step: an error scenario against the sandbox (breaker, timeout, ...)."""

from __future__ import annotations

from rollout.checks.scenarios import run_scenario
from rollout.engine.context import RunContext
from rollout.engine.steps.base import StepResult, checks_result
from rollout.playbook.model import Playbook, ScenarioStep
from rollout.playbook.plugins import StepKind


def run(ctx: RunContext, step: ScenarioStep, label: str) -> StepResult:
    waits = {
        "circuit_breaker": "the circuit breaker to open, then to reset and close",
        "provider_timeout": "a provider call to time out",
    }
    ctx.out.waiting(f"{label}: waiting for {waits.get(step.scenario, 'the scenario')} (at most {step.within:g}s)")
    try:
        result = run_scenario(step.scenario, label, ctx.service, ctx.sandbox, ctx.clock, step.within)
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
