"""What the engine needs of a target: whether it can report the flag it applied, and that report."""

from __future__ import annotations

from typing import Any, Protocol

from rollout.checks.service_api import ServiceClient
from rollout.flags import is_on
from rollout.playbook.model import FlagRead
from rollout.util.errors import MeasurementError
from rollout.util.jsonfields import dig


class Target(Protocol):
    """A service being rolled out, as the engine sees it."""

    @property
    def can_confirm(self) -> bool:
        """Can it report the flag it applied? (Without it, no flag change can be confirmed.)"""
        ...

    def applied(self) -> tuple[bool | None, int | None, dict[str, Any]]:
        """(flag, percent, the raw answer) as the service reports them now; raises
        :class:`~rollout.util.errors.MeasurementError` when it cannot say."""
        ...


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
