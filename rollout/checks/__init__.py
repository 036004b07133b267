"""Checks measure; they never decide the rollout. Each returns :class:`CheckResult` values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome, named for reports and JUnit."""

    name: str
    ok: bool
    detail: str
    duration_s: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
