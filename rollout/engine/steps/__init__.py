"""Step kinds, one module each: ``run(ctx, step, label) -> StepResult`` and ``describe(step,
playbook) -> str``, declared as a :class:`~rollout.playbook.plugins.StepKind` plugin (``class Kind``
at the end of the module). :data:`KINDS` is the registry's view: a new kind is its module (its pydantic
model, ``kind: Literal[...]``, and its ``Kind``) and one line in
:data:`rollout.playbook.plugins.STEPS`, or an entry point of group ``rollout.steps`` in another package.

Steps that measure (smoke, health, scenario, load) return their checks; the runner decides what a
failure does. Steps that change the service (configure, ramp) write through the flag store with a
guard, so a rollback that happened meanwhile refuses the write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from rollout.engine.steps.base import AWAIT, DONE, FAIL, StepResult, Wait, managed_values
from rollout.playbook.model import Playbook
from rollout.playbook.plugins import STEPS, StepKind

__all__ = ["AWAIT", "DONE", "FAIL", "KINDS", "StepKind", "StepResult", "Wait", "describe", "managed_values"]


class _Kinds(Mapping[str, type[StepKind]]):
    """``kind`` -> its step kind, every registered one (loaded on first use)."""

    def __getitem__(self, kind: str) -> type[StepKind]:
        return STEPS.plugins()[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(STEPS.plugins())

    def __len__(self) -> int:
        return len(STEPS.plugins())


#: ``kind`` -> its step kind
KINDS: Mapping[str, type[StepKind]] = _Kinds()


def describe(step: Any, playbook: Playbook | None = None) -> str:
    """One line on what ``step`` does, for ``plan`` and ``validate``."""
    kind = KINDS.get(step.kind)
    return kind.describe(step, playbook) if kind is not None else step.kind
