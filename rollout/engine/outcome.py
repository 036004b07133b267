"""How a command of the engine ended: its status, exit code and message (and ``--json``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FlagOff:
    """When a flag-off was written, and the flag as the engine knew it just before."""

    at: float
    previous_flag: bool
    previous_percent: int | None


@dataclass
class RunOutcome:
    """How a command ended, for its exit code and --json."""

    status: str
    exit_code: int
    message: str
    environment: str
    phase: str | None = None
    step: str | None = None
    flag_off: FlagOff | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: what is still going after the answer (webhook deliveries): the CLI calls it once it has printed
    pending: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        data = {
            "status": self.status,
            "exit_code": self.exit_code,
            "message": self.message,
            "environment": self.environment,
            "phase": self.phase,
            "step": self.step,
            **self.details,
        }
        if self.flag_off:
            data["flag_off_at"] = self.flag_off.at
        return data
