"""Any HTTP service: a health probe, and a read-back of the flag it applied when one is configured."""

from __future__ import annotations

from typing import Any

from rollout.checks.client import ServiceClient
from rollout.playbook.model import FlagRead, HealthProbe
from rollout.targets.base import read_flag
from rollout.util.errors import MeasurementError


class HttpTarget:
    """Any HTTP service: a health probe, and a flag read-back when one is configured."""

    def __init__(
        self,
        service: ServiceClient,
        health: HealthProbe | None,
        flag_state: FlagRead | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.service, self.health, self.flag_state, self._headers = service, health, flag_state, headers

    @property
    def can_confirm(self) -> bool:
        return self.flag_state is not None

    def applied(self) -> tuple[bool | None, int | None, dict[str, Any]]:
        if self.flag_state is None:
            raise MeasurementError("the target has no flag read-back (target.flag_state or flag.read)")
        enabled, percent = read_flag(self.service, self.flag_state, self._headers)
        return enabled, percent, {}
