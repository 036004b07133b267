"""One function per step kind: ``run_<kind>(ctx, step, label) -> StepResult``.

Steps that measure (smoke, health, scenario, load) return their checks; the runner decides what a
failure does. Steps that change the service (configure, ramp) write through the flag store with a
guard, so a rollback that happened meanwhile refuses the write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rollout.checks import CheckResult
from rollout.checks.load import run_load, templated_requests
from rollout.checks.scenarios import run_scenario
from rollout.checks.service_api import MeasurementError
from rollout.checks.smoke import run_booking, run_health, run_http
from rollout.clock import Clock
from rollout.engine.context import RunContext
from rollout.engine.killswitch import guard_not_rolled_back
from rollout.engine.state import AWAITING_APPROVAL
from rollout.engine.observe import FAILED, HOLD_TIMEOUT, PASSED, observe
from rollout.environments import Resolved, resolve, shown_diff
from rollout.flags import FlagBackend
from rollout.gates import Verdict
from rollout.playbook.model import (
    ApproveStep, ConfigureStep, GateStep, HealthStep, HttpCheck, LoadStep, PromoteStep, RampStep, ScenarioStep,
    SmokeStep,
)

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


def _checks_result(ctx: RunContext, checks: list[CheckResult]) -> StepResult:
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


def run_configure(ctx: RunContext, step: ConfigureStep, label: str) -> StepResult:
    resolved = managed_values(ctx.flags, resolve(ctx.resolved.env, overrides={**ctx.resolved.overrides, **step.set})
                              .sharing(ctx.resolved.redactor()))
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
    ctx.state.audit(ctx.env_name, "configure", now, step=label, env_file=ctx.flags.describe(),
                    changes=[{"variable": n, "from": o, "to": v} for n, o, v in changes])
    problem = wait_applied(ctx)
    if problem:
        return StepResult(FAIL, problem)
    return StepResult(DONE, f"{len(changes)} variable(s) changed in {ctx.flags.describe()}")


def run_smoke(ctx: RunContext, step: SmokeStep, label: str) -> StepResult:
    checks = []
    for check in step.checks:
        if isinstance(check, HttpCheck):
            checks.append(run_http(ctx.service, check, ctx.clock, ctx.secret))
        else:
            checks.append(run_booking(ctx.service, check, ctx.clock))
    return _checks_result(ctx, checks)


def run_health_step(ctx: RunContext, step: HealthStep, label: str) -> StepResult:
    probe = getattr(ctx.target, "health", None)
    if probe is not None:  # an http target: its own probe, its own expectation
        check = HttpCheck(type="http", name=label, url=probe.url if probe.url.startswith("http") else None,
                          path=None if probe.url.startswith("http") else probe.url, expect=probe.expect,
                          within=step.within)
        return _checks_result(ctx, [run_http(ctx.service, check, ctx.clock, ctx.secret)])
    return _checks_result(ctx, [run_health(ctx.service, step, ctx.clock, label, ctx.resolved.redactor())])


def run_scenario_step(ctx: RunContext, step: ScenarioStep, label: str) -> StepResult:
    waits = {"circuit_breaker": "the circuit breaker to open, then to reset and close",
             "provider_timeout": "a provider call to time out"}
    ctx.out.waiting(f"{label}: waiting for {waits.get(step.scenario, 'the scenario')} "
                    f"(at most {step.within:g}s)")
    try:
        result = run_scenario(step.scenario, label, ctx.service, ctx.sandbox, ctx.clock, step.within)
    finally:
        ctx.out.done_waiting()
    return _checks_result(ctx, [result])


def run_load_step(ctx: RunContext, step: LoadStep, label: str) -> StepResult:
    total = step.bookings if step.bookings is not None else int(step.rate * step.duration)
    if step.request is not None:
        return _generic_load(ctx, step, label, total)
    with ctx.out.progress(total, f"{label}: bookings") as advance:
        started = ctx.clock.time()
        result = run_load(ctx.service.url, bookings=step.bookings, concurrency=step.concurrency, rate=step.rate,
                          duration=step.duration, progress=advance)
    # let the outbox send what the load created, then read the notification figures over the run
    deadline = ctx.clock.monotonic() + step.drain
    metrics: dict[str, Any] = {}
    while True:
        try:
            metrics = ctx.service.metrics(max(ctx.clock.time() - started, 1.0))
        except MeasurementError as exc:
            return StepResult(FAIL, str(exc))
        if (metrics.get("outbox") or {}).get("pending", 0) == 0 or ctx.clock.monotonic() >= deadline:
            break
        ctx.clock.sleep(0.25)
    expect = step.expect
    checks = [CheckResult(
        "booking success rate", (result.success_rate or 0) >= expect.booking_success_rate,
        f"{result.created}/{result.requested} bookings created ({(result.success_rate or 0) * 100:.2f}%, "
        f"need >= {expect.booking_success_rate * 100:.2f}%)" + (f"; errors {result.errors}" if result.errors else ""),
        result.elapsed_s, {"achieved_rate": result.achieved_rate})]
    checks += [CheckResult(f"booking {c.name}", c.ok, c.detail) for c in _latency_checks(result, expect)]
    if expect.notification_success_rate is not None:
        rate = metrics.get("success_rate")
        attempts = metrics.get("attempts", 0)
        checks.append(CheckResult(
            "notification success rate", rate is not None and rate >= expect.notification_success_rate,
            f"{'no data' if rate is None else f'{rate * 100:.2f}%'} of {attempts} notifications sent "
            f"(need >= {expect.notification_success_rate * 100:.2f}%)"))
    ctx.out.line(f"  {result.created} bookings in {result.elapsed_s:.1f}s ({result.achieved_rate:.0f}/s), "
                 f"p50 {result.p(50) or 0:.1f} ms, p95 {result.p(95) or 0:.1f} ms, p99 {result.p(99) or 0:.1f} ms")
    return _checks_result(ctx, checks)


def _generic_load(ctx: RunContext, step: LoadStep, label: str, total: int) -> StepResult:
    """A load of any HTTP request: judged on its success rate and latency percentiles."""
    spec = step.request
    assert spec is not None
    headers = {k: ctx.secret(v) for k, v in spec.headers.items()}
    requests = templated_requests(spec.method, spec.url or spec.path or "/", spec.body, headers)
    with ctx.out.progress(total, f"{label}: requests") as advance:
        result = run_load(ctx.service.url, bookings=step.bookings, concurrency=step.concurrency, rate=step.rate,
                          duration=step.duration, progress=advance, request=requests,
                          ok_status=tuple(spec.ok_status))
    expect = step.expect
    checks = [CheckResult(
        "request success rate", (result.success_rate or 0) >= expect.booking_success_rate,
        f"{result.created}/{result.requested} requests answered {'/'.join(map(str, spec.ok_status))} "
        f"({(result.success_rate or 0) * 100:.2f}%, need >= {expect.booking_success_rate * 100:.2f}%)"
        + (f"; errors {result.errors}" if result.errors else ""), result.elapsed_s,
        {"achieved_rate": result.achieved_rate})]
    checks += _latency_checks(result, expect)
    ctx.out.line(f"  {result.requested} requests in {result.elapsed_s:.1f}s, p50 {result.p(50) or 0:.1f} ms, "
                 f"p95 {result.p(95) or 0:.1f} ms, p99 {result.p(99) or 0:.1f} ms")
    return _checks_result(ctx, checks)


def _latency_checks(result: Any, expect: Any) -> list[CheckResult]:
    checks = []
    for q, limit in ((95, expect.p95_ms), (99, expect.p99_ms)):
        if limit is not None:
            value = result.p(q)
            checks.append(CheckResult(f"p{q} latency", value is not None and value <= limit,
                                      f"p{q} {value or 0:.1f} ms (limit {limit:g} ms, {len(result.latencies)} requests)"))
    return checks


def accept_hold(ctx: RunContext, label: str, percent: int | None) -> bool:
    """A run with --approve after a hold timed out accepts that hold (once), as a person decided."""
    if not (ctx.approve and ctx.resumed_from == AWAITING_APPROVAL):
        return False
    ctx.approve = False
    ctx.state.audit(ctx.env_name, "approved", ctx.clock.time(), step=label, percent=percent, accepted="hold")
    ctx.out.line(f"  hold at {percent}% accepted by approval" if percent is not None else "  hold accepted by approval")
    return True


def run_gate(ctx: RunContext, step: GateStep, label: str) -> StepResult:
    interval = step.interval or ctx.playbook.watch.interval
    current = ctx.state.get(ctx.env_name)
    if not ctx.read_only and current.observe_started is not None and accept_hold(ctx, label, current.percent):
        return StepResult(DONE, "hold accepted by approval")
    started = None if ctx.read_only else current.observe_started
    if started is None:
        started = ctx.clock.time()
        if not ctx.read_only:
            ctx.state.update(ctx.env_name, started, observe_started=started)
    # a one-shot gate (observe: 0) judges the gate's full window, not the time since the step began
    if step.observe == 0:
        started = ctx.clock.time() - ctx.playbook.gates[step.gate].window
    result = observe(ctx, step.gate, step.observe, interval, step.max_hold, started, label, current.percent)
    return _observation(result, step.on_hold_timeout)


def _observation(result: Any, on_hold_timeout: str) -> StepResult:
    if result.result == PASSED:
        return StepResult(DONE, result.verdict.summary, verdict=result.verdict)
    if result.result == FAILED:
        return StepResult(FAIL, result.verdict.summary, verdict=result.verdict)
    assert result.result == HOLD_TIMEOUT
    status = AWAIT if on_hold_timeout == "approve" else FAIL
    return StepResult(status, f"held too long: {result.verdict.summary}", verdict=result.verdict)


def run_ramp(ctx: RunContext, step: RampStep, label: str) -> StepResult:
    interval = step.interval or ctx.playbook.watch.interval
    guard = guard_not_rolled_back(ctx.env_name, ctx.state)
    while True:
        current = ctx.state.get(ctx.env_name)
        if current.ramp_index >= len(step.percentages):
            return StepResult(DONE, f"reached {step.percentages[-1]}%")
        percent = step.percentages[current.ramp_index]
        if not current.ramp_applied:
            before = ctx.flags.set(enabled=True, percent=percent, guard=guard)
            now = ctx.clock.time()
            ctx.state.update(ctx.env_name, now, ramp_applied=True, percent=percent, flag=True, observe_started=now)
            ctx.state.audit(ctx.env_name, "ramp", now, step=label, percent=percent,
                            previous_percent=before.get(ctx.flags.percent_variable),
                            previous_flag=before.get(ctx.flags.flag_variable))
            problem = wait_applied(ctx)
            if problem:
                return StepResult(FAIL, problem)
            ctx.state.update(ctx.env_name, ctx.clock.time(), observe_started=ctx.clock.time())
            ctx.out.line(f"  flag on for {percent}% of customers; holding {step.hold:g}s", "bold")
            current = ctx.state.get(ctx.env_name)
        else:
            if accept_hold(ctx, label, percent):
                ctx.state.update(ctx.env_name, ctx.clock.time(), ramp_index=current.ramp_index + 1,
                                 ramp_applied=False, observe_started=None)
                continue
            ctx.out.line(f"  resuming at {percent}% (applied before; not applied again)")
        result = observe(ctx, step.gate, step.hold, interval, step.max_hold, current.observe_started or ctx.clock.time(),
                         label, percent)
        outcome = _observation(result, step.on_hold_timeout)
        if outcome.status != DONE:
            return outcome
        ctx.state.update(ctx.env_name, ctx.clock.time(), ramp_index=current.ramp_index + 1, ramp_applied=False,
                         observe_started=None)


def run_approve(ctx: RunContext, step: ApproveStep, label: str) -> StepResult:
    if ctx.approve:
        ctx.approve = False  # one --approve approves one approval
        ctx.state.audit(ctx.env_name, "approved", ctx.clock.time(), step=label, message=step.message)
        return StepResult(DONE, "approved")
    return StepResult(AWAIT, step.message)


def has_evidence(ctx: RunContext, environment: str, sha: str) -> dict[str, Any] | None:
    """The audit entry that shows ``sha`` passed ``environment``'s gates, if there is one."""
    for entry in reversed(ctx.state.audit_log(environment, limit=100_000)):
        if entry["action"] in ("gate_passed", "phase_completed") and entry["detail"].get("commit") == sha:
            return entry
    return None


def run_promote(ctx: RunContext, step: PromoteStep, label: str) -> StepResult:
    from rollout.errors import StateError
    from rollout.promote import open_repo, plan_promotion, promote

    repo = open_repo(ctx.repo)
    plan = plan_promotion(repo, step.source, step.target, step.remote)
    for sha, summary in plan.commits[:20]:
        ctx.out.line(f"  {sha[:10]} {summary}")
    if step.require_evidence_from and plan.commits:
        proof = has_evidence(ctx, step.require_evidence_from, plan.source_sha)
        if proof is None:
            if not ctx.override_evidence:
                raise StateError(
                    f"{label}: commit {plan.source_sha[:12]} of {step.source} has not passed the "
                    f"{step.require_evidence_from} gates; run `rollout gate --env {step.require_evidence_from}` "
                    f"at that commit, or pass --override-evidence REASON")
            ctx.state.audit(ctx.env_name, "evidence_overridden", ctx.clock.time(), step=label,
                            commit=plan.source_sha, reason=ctx.override_evidence)
            ctx.out.line(f"  no {step.require_evidence_from} evidence for {plan.source_sha[:12]}; overridden: "
                         f"{ctx.override_evidence}", "yellow")
        else:
            ctx.out.line(f"  evidence: {step.require_evidence_from} {proof['action'].replace('_', ' ')} at "
                         f"{plan.source_sha[:12]}")
    result = promote(ctx.repo, step.source, step.target, step.remote)
    sha = result.merged_sha or repo.heads[step.target].commit.hexsha
    now = ctx.clock.time()
    ctx.commit = sha
    ctx.state.update(ctx.env_name, now, commit_sha=sha)
    ctx.state.audit(ctx.env_name, "promote", now, step=label, source=step.source, target=step.target,
                    remote=step.remote, commits=len(result.commits), source_commit=result.source_sha, commit=sha,
                    pushed=result.pushed)
    what = f"{len(result.commits)} commit(s) merged and pushed" if result.pushed else "nothing new to promote"
    return StepResult(DONE, f"{step.source} -> {step.target}: {what}; {step.target} at {sha[:12]}")


STEP_RUNNERS: dict[str, Callable[[RunContext, Any, str], StepResult]] = {
    "configure": run_configure,
    "smoke": run_smoke,
    "health": run_health_step,
    "scenario": run_scenario_step,
    "load": run_load_step,
    "gate": run_gate,
    "ramp": run_ramp,
    "approve": run_approve,
    "promote": run_promote,
}
