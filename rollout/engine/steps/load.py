"""The ``load`` step: a bounded load of a request (or the target's own load), judged on success and latency."""

from __future__ import annotations

from rollout.checks.load import latency_checks, run_load, success_check, templated_requests
from rollout.engine.context import RunContext
from rollout.engine.steps.base import FAIL, StepResult, checks_result
from rollout.playbook.model import LoadStep, Playbook
from rollout.playbook.plugins import StepKind, target_events
from rollout.util.errors import MeasurementError


def run(ctx: RunContext, step: LoadStep, label: str) -> StepResult:
    total = step.requests if step.requests is not None else int((step.rate or 0) * (step.duration or 0))
    if step.request is not None:
        return _generic_load(ctx, step, label, total)
    own = getattr(ctx.target, "load", None)
    if own is None:
        return StepResult(FAIL, f"{label}: this target has no load of its own: give the step a request")
    try:
        return checks_result(ctx, own(step, ctx.clock, ctx.out, label))
    except MeasurementError as exc:
        return StepResult(FAIL, str(exc))


def _generic_load(ctx: RunContext, step: LoadStep, label: str, total: int) -> StepResult:
    """A load of any HTTP request: judged on its success rate and latency percentiles."""
    spec = step.request
    assert spec is not None
    headers = {k: ctx.secret(v) for k, v in spec.headers.items()}
    requests = templated_requests(spec.method, spec.url or spec.path or "/", spec.body, headers)
    with ctx.out.progress(total, f"{label}: requests") as advance:
        result = run_load(
            ctx.service.url,
            requests,
            tuple(spec.ok_status),
            step.requests,
            concurrency=step.concurrency,
            rate=step.rate,
            duration=step.duration,
            progress=advance,
        )
    expect = step.expect
    answered = f"requests answered {'/'.join(map(str, spec.ok_status))}"
    checks = [success_check("request success rate", result, expect.success_rate, answered)]
    checks += latency_checks(result, expect)
    ctx.out.line(
        f"  {result.requested} requests in {result.elapsed_s:.1f}s, p50 {result.p(50) or 0:.1f} ms, "
        f"p95 {result.p(95) or 0:.1f} ms, p99 {result.p(99) or 0:.1f} ms"
    )
    return checks_result(ctx, checks)


def describe(step: LoadStep, playbook: Playbook | None = None) -> str:
    what = (
        target_events(playbook)  # the target's own load
        if step.request is None
        else f"{step.request.method} {step.request.url or step.request.path}"
    )
    return (
        f"{step.requests} {what} at concurrency {step.concurrency}"
        if step.requests
        else f"{step.rate:g} {what}/s for {step.duration:g}s"
    )


class Kind(StepKind):
    """The ``load`` step kind."""

    name = "load"
    config = LoadStep
    run = staticmethod(run)
    describe = staticmethod(describe)
