"""Any HTTP service: a health probe, and a read-back of the flag it applied when one is configured."""

from __future__ import annotations

from typing import Any, Literal

from rollout.checks.client import ServiceClient
from rollout.flags import FlagBackend
from rollout.playbook.model import FlagRead, HealthProbe, Playbook, TargetSpec
from rollout.playbook.plugins import TargetPlugin
from rollout.targets.base import read_flag
from rollout.util.errors import MeasurementError


class HttpTargetSpec(TargetSpec):
    """``target: {kind: http}``: any service, its ``health`` probe (required) and optionally
    ``flag_state``, where it reports the flag it applied."""

    kind: Literal["http"] = "http"


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


class HttpPlugin(TargetPlugin):
    """The ``http`` target, as a plugin."""

    name = "http"
    config = HttpTargetSpec

    @staticmethod
    def open(playbook: Playbook, service: ServiceClient, flags: FlagBackend) -> HttpTarget:
        read = playbook.target.flag_state or playbook.flag.read
        # a read-back through the flag backend's own endpoint carries the backend's token
        headers = getattr(flags, "headers", None) if playbook.target.flag_state is None else None
        return HttpTarget(service, playbook.target.health, read, headers)
