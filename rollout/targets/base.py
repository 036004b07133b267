"""What the engine needs of a target: whether it can report the flag it applied, and that report."""

from __future__ import annotations

from typing import Any, Protocol

from rollout.checks.client import ServiceClient
from rollout.flags import FlagBackend, is_on
from rollout.playbook.model import FlagRead
from rollout.util.clock import Clock
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


def wait_service_applied(
    flags: FlagBackend,
    target: Any,
    clock: Clock,
    within: float = 10.0,
    seen: dict[str, Any] | None = None,
    expected: tuple[bool, int | None] | None = None,
) -> str | None:
    """Wait until ``target`` reports the flag and percentage that ``flags`` holds now (or
    ``expected``: what was just written, so a flag-off is confirmed without reading its backend).

    The embedded service re-reads its env file within tens of milliseconds; checking instead of
    assuming means no check or observation ever runs against the previous setting, and a flag-off
    is only called done when the target itself says so. Returns a problem, or None; ``seen`` (if
    given) is filled with the target's last answer (``flag_enabled``, ``rollout_percent``). A
    target that cannot be asked is a problem, never a crash.
    """
    if not target.can_confirm:
        return "the target has no way to report its flag (set target.flag_state or flag.read): cannot confirm"
    enabled, percent = flags.state() if expected is None else expected
    deadline = clock.monotonic() + within
    seen = {} if seen is None else seen
    while True:
        try:
            flag_now, percent_now, raw = target.applied()
            seen.clear()
            seen.update({**raw, "flag_enabled": flag_now, "rollout_percent": percent_now})
            if flag_now == enabled and (percent is None or percent_now is None or percent_now == percent):
                return None
        except Exception as exc:  # noqa: BLE001 - a target that cannot be asked has not confirmed
            seen.clear()
            seen["error"] = str(exc) if isinstance(exc, MeasurementError) else f"{type(exc).__name__}: {exc}"
        if clock.monotonic() >= deadline:
            return (
                f"the service did not pick up the change within {within:g}s (it reports flag "
                f"{seen.get('flag_enabled')}, percent {seen.get('rollout_percent')}; "
                f"{seen.get('config_error') or seen.get('error') or 'is it reading ' + flags.describe() + '?'})"
            )
        clock.sleep(0.02)


def reported_values(flags: FlagBackend, target: Any) -> dict[str, str]:
    """What ``flags`` holds, with the flag and the percentage as ``target`` reports it applied when
    the backend can only say what rollout last wrote (``record_only``: http, command) and the target
    can report: a configure's change is shown against what the service runs, not against rollout's
    own record. A target that cannot say leaves the record."""
    values = flags.read()
    if not getattr(flags, "record_only", False) or target is None or not target.can_confirm:
        return values
    try:
        enabled, percent, _ = target.applied()
    except Exception:  # noqa: BLE001 - the service cannot say now: the record is what is known
        return values
    if enabled is not None:
        values[flags.flag_variable] = "true" if enabled else "false"
    if percent is not None:
        values[flags.percent_variable] = str(percent)
    return values
