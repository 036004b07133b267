"""What every step kind shares: its result, the wait for the target to apply a flag write, and
the few helpers two kinds use. Each kind is a module of this folder with ``run(ctx, step, label)``
and ``describe(step, playbook)``; :data:`rollout.engine.steps.KINDS` is the registry."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rollout.checks import CheckResult
from rollout.engine.context import RunContext
from rollout.engine.observe import FAILED, HOLD_TIMEOUT, PASSED
from rollout.engine.state import AWAITING_APPROVAL
from rollout.flags import FlagBackend
from rollout.gates import Verdict
from rollout.playbook.environments import Resolved
from rollout.util.clock import Clock
from rollout.util.errors import MeasurementError


DONE, FAIL, AWAIT = "done", "fail", "await_approval"

@dataclass
class StepResult:
    status: str
    detail: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    verdict: Verdict | None = None

    def record(self, label: str, kind: str) -> dict[str, Any]:
        """What --json, JUnit and ``RunContext.results`` keep of this step."""
        return {"step": label, "kind": kind, "status": self.status, "detail": self.detail,
                "checks": [c.__dict__ for c in self.checks],
                "verdict": self.verdict.as_dicts() if self.verdict else None}


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


def wait_service_applied(flags: FlagBackend, target: Any, clock: Clock, within: float = 10.0,
                         seen: dict[str, Any] | None = None) -> str | None:
    """Wait until ``target`` reports the flag and percentage that ``flags`` holds now.

    The embedded service re-reads its env file within tens of milliseconds; checking instead of
    assuming means no check or observation ever runs against the previous setting, and a flag-off
    is only called done when the target itself says so. Returns a problem, or None; ``seen`` (if
    given) is filled with the target's last answer (``flag_enabled``, ``rollout_percent``). A
    target that cannot be asked is a problem, never a crash.
    """
    if not target.can_confirm:
        return "the target has no way to report its flag (set target.flag_state or flag.read): cannot confirm"
    enabled, percent = flags.state()
    deadline = clock.monotonic() + within
    seen = {} if seen is None else seen
    while True:
        try:
            flag_now, percent_now, raw = target.applied()
            seen.clear()
            seen.update({**raw, "flag_enabled": flag_now, "rollout_percent": percent_now})
            if flag_now == enabled and (percent is None or percent_now is None or percent_now == percent):
                return None
        except Exception as exc:  # noqa: BLE001 - a target that cannot be asked has not confirmed
            seen.clear()
            seen["error"] = str(exc) if isinstance(exc, MeasurementError) else f"{type(exc).__name__}: {exc}"
        if clock.monotonic() >= deadline:
            return (f"the service did not pick up the change within {within:g}s (it reports flag "
                    f"{seen.get('flag_enabled')}, percent {seen.get('rollout_percent')}; "
                    f"{seen.get('config_error') or seen.get('error') or 'is it reading ' + flags.describe() + '?'})")
        clock.sleep(0.02)


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
    assert result.result == HOLD_TIMEOUT
    status = AWAIT if on_hold_timeout == "approve" else FAIL
    return StepResult(status, f"held too long: {result.verdict.summary}", verdict=result.verdict)
