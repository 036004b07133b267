"""What is being rolled out, seen from the engine: how it reports the flag it applied, and its health.

``EmbeddedTarget`` is the WhatsApp service shipped with rollout (``/api/whatsapp/metrics`` and
``/api/whatsapp/health``). ``HttpTarget`` is any service: a health probe with an expected status
and JSON fields, and a read-back of the flag (``target.flag_state`` in the playbook, else the flag
backend's ``read``), or none, in which case a flag change cannot be confirmed and rollout says so.
"""

from __future__ import annotations

from typing import Any

from rollout.checks.service_api import MeasurementError, ServiceClient
from rollout.flags import is_on
from rollout.jsonfields import dig
from rollout.playbook.model import FlagRead, HealthProbe


def read_flag(service: ServiceClient, spec: FlagRead, headers: dict[str, str] | None = None) -> tuple[bool, int | None]:
    """GET ``spec.url`` and pick the flag (and the percentage) by their field paths."""
    response = service.request("GET", spec.url, headers=headers)
    if response.status_code != 200:
        raise MeasurementError(f"{spec.url}: HTTP {response.status_code}")
    try:
        data = response.json()
        raw = dig(data, spec.enabled)
        percent = dig(data, spec.percent) if spec.percent else None
    except ValueError as exc:
        raise MeasurementError(f"{spec.url}: answer is not JSON") from exc
    except KeyError as exc:
        raise MeasurementError(f"{spec.url}: no field {exc.args[0]!r} in the answer") from None
    enabled = is_on(raw)
    try:
        return enabled, None if percent is None else int(percent)
    except (TypeError, ValueError):
        raise MeasurementError(f"{spec.url}: {spec.percent} is not a whole number ({percent!r})") from None


class EmbeddedTarget:
    """The embedded WhatsApp service."""

    can_confirm = True

    def __init__(self, service: ServiceClient) -> None:
        self.service = service

    def applied(self) -> tuple[bool | None, int | None, dict[str, Any]]:
        """(flag, percent, the raw answer) as the service reports them now."""
        seen = self.service.metrics(1.0)
        return seen.get("flag_enabled"), seen.get("rollout_percent"), seen


class HttpTarget:
    """Any HTTP service: a health probe, and a flag read-back when one is configured."""

    def __init__(self, service: ServiceClient, health: HealthProbe | None, flag_state: FlagRead | None,
                 headers: dict[str, str] | None = None) -> None:
        self.service, self.health, self.flag_state, self._headers = service, health, flag_state, headers

    @property
    def can_confirm(self) -> bool:
        return self.flag_state is not None

    def applied(self) -> tuple[bool | None, int | None, dict[str, Any]]:
        if self.flag_state is None:
            raise MeasurementError("the target has no flag read-back (target.flag_state or flag.read)")
        enabled, percent = read_flag(self.service, self.flag_state, self._headers)
        return enabled, percent, {}


def make_target(playbook: Any, service: ServiceClient, flags: Any) -> Any:
    """The playbook's target for one environment's ``service``. An http target reads the flag back
    from ``target.flag_state``, else from the flag backend's ``read`` (with the backend's token)."""
    from rollout.flagdb import PostgresFlags, ReplicasTarget

    if isinstance(flags, PostgresFlags):  # a fleet: confirmed when every live replica applied it
        return ReplicasTarget(flags, playbook.target.health if playbook.target.kind == "http" else None)
    if playbook.target.kind == "embedded":
        return EmbeddedTarget(service)
    read = playbook.target.flag_state or playbook.flag.read
    headers = getattr(flags, "headers", None) if playbook.target.flag_state is None else None
    return HttpTarget(service, playbook.target.health, read, headers)
