"""The embedded WhatsApp booking-notification service (``rollout serve``), seen from the engine."""

from __future__ import annotations

from typing import Any

from rollout.checks.service_api import ServiceClient


class EmbeddedTarget:
    """The embedded WhatsApp service."""

    can_confirm = True

    def __init__(self, service: ServiceClient) -> None:
        self.service = service

    def applied(self) -> tuple[bool | None, int | None, dict[str, Any]]:
        """(flag, percent, the raw answer) as the service reports them now."""
        seen = self.service.metrics(1.0)
        return seen.get("flag_enabled"), seen.get("rollout_percent"), seen
