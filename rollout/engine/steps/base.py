"""What every step kind shares: its result, the wait for the target to apply a flag write, and
the few helpers two kinds use. Each kind is a module of this folder with ``run(ctx, step, label)``
and ``describe(step, playbook)``; :data:`rollout.engine.steps.KINDS` is the registry."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rollout.checks import CheckResult
from rollout.engine.context import RunContext
from rollout.engine.observe import FAILED, HOLD_TIMEOUT, PASSED, PROMOTED, PROMOTED_FULL, STOPPED
from rollout.engine.state import AWAITING_APPROVAL
from rollout.flags import FlagBackend
from rollout.gates import Verdict
from rollout.playbook.environments import Resolved
from rollout.targets import wait_service_applied

DONE, FAIL, AWAIT = "done", "fail", "await_approval"


@dataclass
class StepResult:
    status: str
    detail: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    verdict: Verdict | None = None

    def record(self, label: str, kind: str) -> dict[str, Any]:
        """What --json, JUnit and ``RunContext.results`` keep of this step."""
        return {
            "step": label,
            "kind": kind,
            "status": self.status,
            "detail": self.detail,
            "checks": [c.__dict__ for c in self.checks],
            "verdict": self.verdict.as_dicts() if self.verdict else None,
        }


def checks_result(ctx: RunContext, checks: list[CheckResult]) -> StepResult:
    for check in checks:
        ctx.out.check(check.name, check.ok, check.detail)
    failed = [c for c in checks if not c.ok]
    if failed:
        return StepResult(FAIL, "; ".join(f"{c.name}: {c.detail}" for c in failed), checks)
    return StepResult(DONE, f"{len(checks)} check(s) passed", checks)


def wait_applied(ctx: RunContext, within: float = 10.0) -> str | None:
    """Wait until the target reports the flag and percentage rollout wrote (see
    :func:`wait_service_applied`). Returns a problem, or None. A target that cannot report its flag
    is not waited for: the run goes on and says so (a flag-off, though, is then *unconfirmed*)."""
    if not ctx.target.can_confirm:
        ctx.out.line("  the target does not report its flag (no flag_state read-back): not confirmed", "yellow")
        return None
    return wait_service_applied(ctx.flags, ctx.target, ctx.clock, within)


def managed_values(flags: FlagBackend, resolved: Resolved) -> Resolved:
    """What a configure writes through ``flags``: every variable to an env file; only the flag and
    the percentage to another backend (the service's other settings belong to its deployment)."""
    if flags.env_file is not None:
        return resolved
    keep = (flags.flag_variable, flags.percent_variable)
    return dataclasses.replace(resolved, values={k: v for k, v in resolved.values.items() if k in keep})


def accept_hold(ctx: RunContext, label: str, percent: int | None) -> bool:
    """A run with --approve after a hold timed out accepts that hold (once), as a person decided."""
    if not (ctx.approve and ctx.resumed_from == AWAITING_APPROVAL):
        return False
    ctx.approve = False
    ctx.state.audit(ctx.env_name, "approved", ctx.clock.time(), step=label, percent=percent, accepted="hold")
    ctx.out.line(f"  hold at {percent}% accepted by approval" if percent is not None else "  hold accepted by approval")
    return True


def observation_result(result: Any, on_hold_timeout: str) -> StepResult:
    if result.result == PASSED:
        return StepResult(DONE, result.verdict.summary, verdict=result.verdict)
    if result.result == FAILED:
        return StepResult(FAIL, result.verdict.summary, verdict=result.verdict)
    if result.result == STOPPED:  # a signal failed, or a provider erred past its limit: a person decides
        return StepResult(AWAIT, result.verdict.summary, verdict=result.verdict)
    if result.result in (PROMOTED, PROMOTED_FULL):
        return StepResult(
            DONE, f"accepted now by a person (rollout promote): {result.verdict.summary}", verdict=result.verdict
        )
    assert result.result == HOLD_TIMEOUT
    status = AWAIT if on_hold_timeout == "approve" else FAIL
    return StepResult(status, f"held too long: {result.verdict.summary}", verdict=result.verdict)
