"""The ``approve`` step: wait for a person (``advance --approve``)."""

from __future__ import annotations

from rollout.engine.context import RunContext
from rollout.engine.steps.base import AWAIT, DONE, StepResult
from rollout.playbook.model import ApproveStep, Playbook
from rollout.playbook.plugins import StepKind


def run(ctx: RunContext, step: ApproveStep, label: str) -> StepResult:
    if ctx.approve:
        ctx.approve = False  # one --approve approves one approval
        ctx.state.audit(ctx.env_name, "approved", ctx.clock.time(), step=label, message=step.message)
        return StepResult(DONE, "approved")
    return StepResult(AWAIT, step.message)


def describe(step: ApproveStep, playbook: Playbook | None = None) -> str:
    return step.message


class Kind(StepKind):
    """The ``approve`` step kind."""

    name = "approve"
    config = ApproveStep
    run = staticmethod(run)
    describe = staticmethod(describe)
