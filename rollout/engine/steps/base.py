"""What every step kind shares: its result, the wait for the target to apply a flag write, and
the few helpers two kinds use. Each kind is a module of this folder with ``run(ctx, step, label)``
and ``describe(step, playbook)``; a kind that observes over time (ramp, gate) has ``tick(ctx, step,
label)`` instead, which does one look and returns the result or when to look again (:class:`Wait`),
so a terminal's ``advance`` and the always-on agent drive it the same way. Each module ends with its
:class:`~rollout.playbook.plugins.StepKind` plugin (``class Kind``), registered in
:data:`rollout.playbook.plugins.STEPS`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rollout.checks import CheckResult
from rollout.engine.context import RunContext
from rollout.engine.reconcile import Act, Decision
from rollout.engine.state import AWAITING_APPROVAL
from rollout.flags import FlagBackend
from rollout.gates import Verdict
from rollout.playbook.environments import Resolved
from rollout.targets import wait_service_applied

DONE, FAIL, AWAIT = "done", "fail", "await_approval"


@dataclass(frozen=True)
class Wait:
    """An observing step that has nothing to decide yet: look again at ``at`` (the clock's time)."""

    at: float


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


def decided(decision: Decision, verdict: Verdict, on_hold_timeout: str) -> StepResult:
    """A step's result from a decision that ends an observation (not ACCEPT of a ramp's percentage,
    not WAIT)."""
    if decision.act == Act.TURN_OFF:
        return StepResult(FAIL, verdict.summary, verdict=verdict)
    if decision.act == Act.STOP:  # a signal failed, or a provider erred past its limit: a person decides
        return StepResult(AWAIT, verdict.summary, verdict=verdict)
    if decision.act in (Act.PROMOTE, Act.PROMOTE_FULL):
        return StepResult(DONE, f"accepted now by a person (rollout promote): {verdict.summary}", verdict=verdict)
    if decision.act == Act.ACCEPT:
        return StepResult(DONE, verdict.summary, verdict=verdict)
    assert decision.act == Act.TIMEOUT, decision
    status = AWAIT if on_hold_timeout == "approve" else FAIL
    return StepResult(status, decision.reason, verdict=verdict)
