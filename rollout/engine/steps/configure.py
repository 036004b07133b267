"""The ``configure`` step: apply the environment's variables (with the step's ``set`` on top)."""

from __future__ import annotations

from rollout.engine.context import RunContext
from rollout.engine.killswitch import guard_not_rolled_back
from rollout.engine.steps.base import DONE, FAIL, StepResult, managed_values, wait_applied
from rollout.playbook.environments import resolve, shown_diff
from rollout.playbook.model import ConfigureStep, Playbook


def run(ctx: RunContext, step: ConfigureStep, label: str) -> StepResult:
    resolved = managed_values(
        ctx.flags,
        resolve(ctx.resolved.env, overrides={**ctx.resolved.overrides, **step.set}).sharing(ctx.resolved.redactor()),
    )
    before = ctx.flags.read()
    changes = shown_diff(resolved, before)
    for name, old, new in changes:
        ctx.out.line(f"  {name}: {old if old is not None else '(unset)'} -> {new if new is not None else '(unset)'}")
    if not changes:
        ctx.out.line("  no change")
    ctx.flags.replace(resolved.values, guard=guard_not_rolled_back(ctx.env_name, ctx.state))
    enabled, percent = ctx.flags.state()
    now = ctx.clock.time()
    ctx.state.update(ctx.env_name, now, flag=enabled, percent=percent)
    ctx.state.audit(
        ctx.env_name,
        "configure",
        now,
        step=label,
        env_file=ctx.flags.describe(),
        changes=[{"variable": n, "from": o, "to": v} for n, o, v in changes],
    )
    problem = wait_applied(ctx)
    if problem:
        return StepResult(FAIL, problem)
    return StepResult(DONE, f"{len(changes)} variable(s) changed in {ctx.flags.describe()}")


def describe(step: ConfigureStep, playbook: Playbook | None = None) -> str:
    return "apply the environment's variables" + (
        f" with {', '.join(f'{k}={v}' for k, v in step.set.items())}" if step.set else ""
    )
