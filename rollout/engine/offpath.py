"""What a flag-off works with (:class:`OffPath`), and where it tells a person what it does (:class:`Lines`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rollout.checks.client import ServiceClient
from rollout.engine.context import RunContext
from rollout.engine.state import StateRecords
from rollout.flags import FlagBackend
from rollout.playbook.environments import Resolved
from rollout.util.clock import Clock


class Lines(Protocol):
    """Where a flag-off tells a person what it does (a :class:`Reporter` is one)."""

    def line(self, text: str, style: str = "") -> None: ...


class _Silent:
    def line(self, text: str, style: str = "") -> None:
        """Says nothing."""


@dataclass
class OffPath:
    """What a flag-off works with, for an automatic one (from a run's context) and a person's
    (``rollout rollback``, the dashboard) alike."""

    env: str
    flags: FlagBackend
    state: StateRecords
    clock: Clock
    out: Lines
    #: the target that confirms the flag off (None: it could not be built)
    target: Any
    resolved: Resolved
    service: ServiceClient
    incidents_dir: Path
    notify: Callable[..., None]
    #: how long the target has to report the flag off
    confirm_within: float = 5.0

    @classmethod
    def of(cls, ctx: RunContext) -> OffPath:
        return cls(
            ctx.env_name,
            ctx.flags,
            ctx.state,
            ctx.clock,
            ctx.out,
            ctx.target,
            ctx.resolved,
            ctx.service,
            ctx.incidents_dir,
            ctx.notify,
        )
