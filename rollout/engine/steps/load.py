"""The ``load`` step: a bounded booking load (or any HTTP request), judged on success and latency."""

from __future__ import annotations

from typing import Any

from rollout.checks import CheckResult
from rollout.checks.load import run_load, templated_requests
from rollout.engine.context import RunContext
from rollout.engine.steps.base import FAIL, StepResult, checks_result
from rollout.playbook.model import LoadStep, Playbook
from rollout.playbook.plugins import StepKind
from rollout.util.errors import MeasurementError


def run(ctx: RunContext, step: LoadStep, label: str) -> StepResult:
    total = step.requests if step.requests is not None else int((step.rate or 0) * (step.duration or 0))
    if step.request is not None:
        return _generic_load(ctx, step, label, total)
    with ctx.out.progress(total, f"{label}: bookings") as advance:
        started = ctx.clock.time()
        result = run_load(
            ctx.service.url,
            bookings=step.requests,
            concurrency=step.concurrency,
            rate=step.rate,
            duration=step.duration,
            progress=advance,
        )
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
    checks = [
        CheckResult(
            "booking success rate",
            (result.success_rate or 0) >= expect.success_rate,
            f"{result.created}/{result.requested} bookings created ({(result.success_rate or 0) * 100:.2f}%, "
            f"need >= {expect.success_rate * 100:.2f}%)" + (f"; errors {result.errors}" if result.errors else ""),
            result.elapsed_s,
            {"achieved_rate": result.achieved_rate},
        )
    ]
    checks += [CheckResult(f"booking {c.name}", c.ok, c.detail) for c in _latency_checks(result, expect)]
    if expect.notification_success_rate is not None:
        rate = metrics.get("success_rate")
        attempts = metrics.get("attempts", 0)
        checks.append(
            CheckResult(
                "notification success rate",
                rate is not None and rate >= expect.notification_success_rate,
                f"{'no data' if rate is None else f'{rate * 100:.2f}%'} of {attempts} notifications sent "
                f"(need >= {expect.notification_success_rate * 100:.2f}%)",
            )
        )
    ctx.out.line(
        f"  {result.created} bookings in {result.elapsed_s:.1f}s ({result.achieved_rate:.0f}/s), "
        f"p50 {result.p(50) or 0:.1f} ms, p95 {result.p(95) or 0:.1f} ms, p99 {result.p(99) or 0:.1f} ms"
    )
    return checks_result(ctx, checks)


def _generic_load(ctx: RunContext, step: LoadStep, label: str, total: int) -> StepResult:
    """A load of any HTTP request: judged on its success rate and latency percentiles."""
    spec = step.request
    assert spec is not None
    headers = {k: ctx.secret(v) for k, v in spec.headers.items()}
    requests = templated_requests(spec.method, spec.url or spec.path or "/", spec.body, headers)
    with ctx.out.progress(total, f"{label}: requests") as advance:
        result = run_load(
            ctx.service.url,
            bookings=step.requests,
            concurrency=step.concurrency,
            rate=step.rate,
            duration=step.duration,
            progress=advance,
            request=requests,
            ok_status=tuple(spec.ok_status),
        )
    expect = step.expect
    checks = [
        CheckResult(
            "request success rate",
            (result.success_rate or 0) >= expect.success_rate,
            f"{result.created}/{result.requested} requests answered {'/'.join(map(str, spec.ok_status))} "
            f"({(result.success_rate or 0) * 100:.2f}%, need >= {expect.success_rate * 100:.2f}%)"
            + (f"; errors {result.errors}" if result.errors else ""),
            result.elapsed_s,
            {"achieved_rate": result.achieved_rate},
        )
    ]
    checks += _latency_checks(result, expect)
    ctx.out.line(
        f"  {result.requested} requests in {result.elapsed_s:.1f}s, p50 {result.p(50) or 0:.1f} ms, "
        f"p95 {result.p(95) or 0:.1f} ms, p99 {result.p(99) or 0:.1f} ms"
    )
    return checks_result(ctx, checks)


def _latency_checks(result: Any, expect: Any) -> list[CheckResult]:
    checks = []
    for q, limit in ((95, expect.p95_ms), (99, expect.p99_ms)):
        if limit is not None:
            value = result.p(q)
            checks.append(
                CheckResult(
                    f"p{q} latency",
                    value is not None and value <= limit,
                    f"p{q} {value or 0:.1f} ms (limit {limit:g} ms, {len(result.latencies)} requests)",
                )
            )
    return checks


def describe(step: LoadStep, playbook: Playbook | None = None) -> str:
    what = "bookings" if step.request is None else f"{step.request.method} {step.request.url or step.request.path}"
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
