"""Step kinds, one module each: ``run(ctx, step, label) -> StepResult`` and ``describe(step,
playbook) -> str``. :data:`KINDS` is the registry: a new kind is its pydantic model in
:mod:`rollout.playbook.model`, one module here, and one line below.

Steps that measure (smoke, health, scenario, load) return their checks; the runner decides what a
failure does. Steps that change the service (configure, ramp) write through the flag store with a
guard, so a rollback that happened meanwhile refuses the write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rollout.engine.context import RunContext
from rollout.engine.steps import approve, configure, gate, health, load, promote, ramp, scenario, smoke
from rollout.engine.steps.base import AWAIT, DONE, FAIL, StepResult, Wait, managed_values
from rollout.playbook.model import Playbook

__all__ = ["AWAIT", "DONE", "FAIL", "KINDS", "StepKind", "StepResult", "Wait", "describe", "managed_values"]


@dataclass(frozen=True)
class StepKind:
    """What the engine does with one kind of step, and how ``plan`` and ``validate`` describe it.
    A kind that observes over time has ``tick`` (one look: a result, or when to look again)."""

    run: Callable[[RunContext, Any, str], StepResult]
    describe: Callable[[Any, Playbook | None], str]
    tick: Callable[[RunContext, Any, str], StepResult | Wait] | None = None

    def step(self, ctx: RunContext, step: Any, label: str) -> StepResult | Wait:
        """One look at ``step`` (a kind without ``tick`` runs to its end)."""
        return self.tick(ctx, step, label) if self.tick is not None else self.run(ctx, step, label)


#: ``kind`` -> its step kind
KINDS: dict[str, StepKind] = {
    "configure": StepKind(configure.run, configure.describe),
    "smoke": StepKind(smoke.run, smoke.describe),
    "health": StepKind(health.run, health.describe),
    "scenario": StepKind(scenario.run, scenario.describe),
    "load": StepKind(load.run, load.describe),
    "gate": StepKind(gate.run, gate.describe, gate.tick),
    "ramp": StepKind(ramp.run, ramp.describe, ramp.tick),
    "approve": StepKind(approve.run, approve.describe),
    "promote": StepKind(promote.run, promote.describe),
}


def describe(step: Any, playbook: Playbook | None = None) -> str:
    """One line on what ``step`` does, for ``plan`` and ``validate``."""
    kind = KINDS.get(step.kind)
    return kind.describe(step, playbook) if kind is not None else step.kind
