"""The metric providers of one run, by name, and one evaluation of a gate set through them."""

from __future__ import annotations

from collections.abc import Callable

from rollout.checks.client import ServiceClient
from rollout.gates import Reading
from rollout.playbook.model import GateSet, Playbook
from rollout.playbook.plugins import PROVIDERS
from rollout.providers.base import Provider, impossible
from rollout.util.errors import MeasurementError


class MetricSources:
    """The providers a playbook names, plus the target's own (``embedded``); :meth:`read` measures a
    gate set."""

    def __init__(self, providers: dict[str, Provider]) -> None:
        self.providers = providers

    @classmethod
    def build(
        cls,
        playbook: Playbook,
        service: ServiceClient,
        secret: Callable[[str], str],
        own: dict[str, Provider] | None = None,
    ) -> MetricSources:
        """Providers for ``playbook``, after ``own`` (the ones a target brings, by name:
        :func:`rollout.targets.own_providers`); ``secret`` resolves a ``${REFERENCE}`` (and registers
        it for redaction)."""
        providers: dict[str, Provider] = dict(own or {})
        for name, spec in playbook.providers.items():
            providers[name] = PROVIDERS.get(spec.kind).open(spec, name, service.url, secret)
        return cls(providers)

    def read(self, gates: GateSet, now: float, percent: int | None, cap: float | None = None) -> list[Reading]:
        """One reading per metric of ``gates``; a metric that cannot be measured, or whose reading no
        measurement can be (:func:`~rollout.providers.base.impossible`), carries its error.

        ``cap`` (seconds: the time since the step began) clamps every metric's window, whatever its
        provider, so no window reaches back before the step: a window of nothing is no data, asked of
        no provider."""
        for provider in self.providers.values():
            if hasattr(provider, "start_evaluation"):
                provider.start_evaluation()
        readings = []
        for spec in gates.metrics:
            window = spec.window or gates.window
            effective = min(window, cap) if cap is not None else window
            if effective <= 0:  # the step has just begun: nothing of it to read yet, and nothing before it
                readings.append(Reading(None, 0, 0.0))
                continue
            try:
                got = self.providers[spec.provider].measure(spec, effective, now, percent)
            except MeasurementError as exc:
                got = Reading(None, 0, effective, error=str(exc))
            except Exception as exc:  # noqa: BLE001 - a provider's surprise is no data (a hold), never a crash
                got = Reading(None, 0, effective, error=f"{spec.provider}: {type(exc).__name__}: {exc}")
            problem = None if got.error else impossible(spec, got)
            readings.append(Reading(None, 0, effective, error=f"{spec.provider}: {problem}") if problem else got)
        return readings

    def close(self) -> None:
        for provider in self.providers.values():
            if hasattr(provider, "close"):
                provider.close()
