"""The ``smoke`` step: HTTP checks, and checks of the target's own kinds (the embedded service's bookings)."""

from __future__ import annotations

from rollout.checks import CheckResult
from rollout.checks.smoke import run_http
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
            checks.append(_own(ctx, check))
    return checks_result(ctx, checks)


def _own(ctx: RunContext, check: object) -> CheckResult:
    """A check of a kind the target defines, run by the target."""
    own = getattr(ctx.target, "check", None)
    if own is None:
        return CheckResult(getattr(check, "name", "check"), False, "this target runs no checks of this type")
    return own(check, ctx.clock)


def describe(step: SmokeStep, playbook: Playbook | None = None) -> str:
    return ", ".join(c.name for c in step.checks)


class Kind(StepKind):
    """The ``smoke`` step kind."""

    name = "smoke"
    config = SmokeStep
    run = staticmethod(run)
    describe = staticmethod(describe)
