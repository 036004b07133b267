"""The embedded WhatsApp booking-notification service (``rollout serve``), seen from the engine."""

from __future__ import annotations

from typing import Any, Literal

from rollout.checks.service_api import ServiceClient
from rollout.flags import FlagBackend
from rollout.playbook.model import Playbook, TargetSpec
from rollout.playbook.plugins import TargetPlugin


class EmbeddedTargetSpec(TargetSpec):
    """``target: {kind: embedded}`` (the default): the WhatsApp service shipped with rollout."""

    kind: Literal["embedded"] = "embedded"


class EmbeddedTarget:
    """The embedded WhatsApp service."""

    can_confirm = True

    def __init__(self, service: ServiceClient) -> None:
        self.service = service

    def applied(self) -> tuple[bool | None, int | None, dict[str, Any]]:
        """(flag, percent, the raw answer) as the service reports them now."""
        seen = self.service.metrics(1.0)
        return seen.get("flag_enabled"), seen.get("rollout_percent"), seen


class EmbeddedPlugin(TargetPlugin):
    """The ``embedded`` target, as a plugin."""

    name = "embedded"
    config = EmbeddedTargetSpec

    @staticmethod
    def open(playbook: Playbook, service: ServiceClient, flags: FlagBackend) -> EmbeddedTarget:
        return EmbeddedTarget(service)
