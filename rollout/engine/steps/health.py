"""The ``health`` step: the target's health probe (an http target's own, or the target's own health check)."""

from __future__ import annotations

from rollout.checks import CheckResult
from rollout.checks.smoke import run_http
from rollout.engine.context import RunContext
from rollout.engine.steps.base import StepResult, checks_result
from rollout.playbook.model import HealthStep, HttpCheck, Playbook
from rollout.playbook.plugins import StepKind


def run(ctx: RunContext, step: HealthStep, label: str) -> StepResult:
    probe = getattr(ctx.target, "health", None)
    if probe is not None:  # an http target: its own probe, its own expectation
        check = HttpCheck(
            type="http",
            name=label,
            url=probe.url if probe.url.startswith("http") else None,
            path=None if probe.url.startswith("http") else probe.url,
            expect=probe.expect,
            within=step.within,
        )
        return checks_result(ctx, [run_http(ctx.service, check, ctx.clock, ctx.secret)])
    own = getattr(ctx.target, "check_health", None)
    if own is None:
        return checks_result(ctx, [CheckResult(label, False, "the target has no health probe (target.health)")])
    return checks_result(ctx, [own(step, ctx.clock, label, ctx.resolved.redactor())])


def describe(step: HealthStep, playbook: Playbook | None = None) -> str:
    return f"health is {'/'.join(step.expect)}"


class Kind(StepKind):
    """The ``health`` step kind."""

    name = "health"
    config = HealthStep
    run = staticmethod(run)
    describe = staticmethod(describe)
