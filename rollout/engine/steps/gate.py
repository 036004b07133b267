"""The ``gate`` step: observe a gate set for a while (0: judge its window once).

As a ramp's percentage, one :func:`tick` is one evaluation and what it decides; :func:`run` ticks
until the step ends."""

from __future__ import annotations

from rollout.engine.context import RunContext
from rollout.engine.observe import Watching, carry_out, evaluate, watching
from rollout.engine.reconcile import Act, Look, decide_observation
from rollout.engine.steps.base import DONE, StepResult, Wait, accept_hold, decided
from rollout.playbook.model import GateStep, Playbook
from rollout.playbook.plugins import StepKind


def run(ctx: RunContext, step: GateStep, label: str) -> StepResult:
    """Tick until the gate step ends."""
    while True:
        result = tick(ctx, step, label)
        if isinstance(result, StepResult):
            return result
        ctx.clock.sleep(max(0.0, result.at - ctx.clock.time()))


def tick(ctx: RunContext, step: GateStep, label: str) -> StepResult | Wait:
    """One evaluation of the gate step's gate set, and what it decides."""
    current = ctx.state.get(ctx.env_name)
    w = ctx.watching
    if not isinstance(w, Watching) or w.step != label:
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
        look = Look(step.observe, step.max_hold, step.interval or ctx.playbook.interval)
        w = ctx.watching = watching(ctx, step.gate, label, current.percent, started, look)
        if ctx.clock.time() - started < look.interval:  # nothing measured since the step began yet
            return Wait(started + look.interval)
    verdict = evaluate(ctx, w)
    # `rollout gate` (CI) judges what it sees; a person's pause or promotion is for advances
    control = None if ctx.read_only else ctx.state.control(ctx.env_name)
    decision = carry_out(
        ctx,
        w,
        decide_observation(ctx.state.get(ctx.env_name), w.started_at, w.look, verdict, control, ctx.clock.time()),
        verdict,
    )
    if decision.act == Act.WAIT:
        assert decision.next_at is not None
        return Wait(decision.next_at)
    ctx.watching = None
    return decided(decision, verdict, step.on_hold_timeout)


def describe(step: GateStep, playbook: Playbook | None = None) -> str:
    return f"gate {step.gate!r}" + (f" observed for {step.observe:g}s" if step.observe else "")


class Kind(StepKind):
    """The ``gate`` step kind."""

    name = "gate"
    config = GateStep
    run = staticmethod(run)
    describe = staticmethod(describe)
    tick = staticmethod(tick)
