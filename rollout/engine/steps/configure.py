"""The ``configure`` step: apply the environment's variables (with the step's ``set`` on top)."""

from __future__ import annotations

from rollout.engine.context import RunContext
from rollout.engine.flagwrites import Announced, after
from rollout.engine.killswitch import guard_not_rolled_back
from rollout.engine.state import StateRecords
from rollout.engine.steps.base import DONE, FAIL, StepResult, managed_values, wait_applied
from rollout.flags import FlagBackend, is_on
from rollout.playbook.environments import Resolved, resolve, shown_diff
from rollout.playbook.model import ConfigureStep, Playbook
from rollout.playbook.plugins import StepKind
from rollout.targets import reported_values
from rollout.util.clock import Clock


def run(ctx: RunContext, step: ConfigureStep, label: str) -> StepResult:
    resolved = managed_values(
        ctx.flags,
        resolve(ctx.resolved.env, overrides={**ctx.resolved.overrides, **step.set}).sharing(ctx.resolved.redactor()),
    )
    before = reported_values(ctx.flags, ctx.target)
    changes = shown_diff(resolved, before)
    for name, old, new in changes:
        ctx.out.line(f"  {name}: {old if old is not None else '(unset)'} -> {new if new is not None else '(unset)'}")
    if not changes:
        ctx.out.line("  no change")
    apply(ctx.flags, ctx.state, ctx.env_name, ctx.clock, resolved, changes, step=label)
    problem = wait_applied(ctx)
    if problem:
        return StepResult(FAIL, problem)
    return StepResult(DONE, f"{len(changes)} variable(s) changed in {ctx.flags.describe()}")


def apply(
    flags: FlagBackend,
    state: StateRecords,
    env_name: str,
    clock: Clock,
    resolved: Resolved,
    changes: list[tuple[str, str | None, str | None]],
    **detail: str,
) -> None:
    """Write ``resolved``'s values through ``flags`` (refused once the environment was rolled back),
    record the flag it leaves and a ``configure`` audit entry with ``changes`` and ``detail``: the
    step and ``rollout configure`` alike."""
    values = resolved.values
    raw_percent = values.get(flags.percent_variable)
    announced = Announced(
        state,
        env_name,
        clock,
        "configure",
        flag=is_on(values[flags.flag_variable]) if flags.flag_variable in values else None,
        percent=int(raw_percent) if raw_percent is not None and raw_percent.isdigit() else None,
        check=guard_not_rolled_back(env_name, state),
        **detail,
    )
    flags.replace(values, guard=announced)
    after("configure", "write")
    enabled, percent = flags.state()
    now = clock.time()
    with state.tx() as db:
        state.update(env_name, now, db=db, flag=enabled, percent=percent)
        state.audit(
            env_name,
            "configure",
            now,
            db=db,
            env_file=flags.describe(),
            changes=[{"variable": n, "from": o, "to": v} for n, o, v in changes],
            write=announced.write,
            **detail,
        )
    after("configure", "record")


def describe(step: ConfigureStep, playbook: Playbook | None = None) -> str:
    return "apply the environment's variables" + (
        f" with {', '.join(f'{k}={v}' for k, v in step.set.items())}" if step.set else ""
    )


class Kind(StepKind):
    """The ``configure`` step kind."""

    name = "configure"
    config = ConfigureStep
    run = staticmethod(run)
    describe = staticmethod(describe)
