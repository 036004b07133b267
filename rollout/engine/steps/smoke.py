"""The ``smoke`` step: HTTP checks and a synthetic booking."""

from __future__ import annotations

from rollout.checks.smoke import run_booking, run_http
from rollout.engine.context import RunContext
from rollout.engine.steps.base import StepResult, checks_result
from rollout.playbook.model import HttpCheck, Playbook, SmokeStep
from rollout.playbook.plugins import StepKind


def run(ctx: RunContext, step: SmokeStep, label: str) -> StepResult:
    checks = []
    for check in step.checks:
        if isinstance(check, HttpCheck):
            checks.append(run_http(ctx.service, check, ctx.clock, ctx.secret))
        else:
            checks.append(run_booking(ctx.service, check, ctx.clock))
    return checks_result(ctx, checks)


def describe(step: SmokeStep, playbook: Playbook | None = None) -> str:
    return ", ".join(c.name for c in step.checks)


class Kind(StepKind):
    """The ``smoke`` step kind."""

    name = "smoke"
    config = SmokeStep
    run = staticmethod(run)
    describe = staticmethod(describe)
