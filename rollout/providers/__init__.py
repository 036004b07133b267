"""Where gate metrics come from. Measuring stays apart from judging: a provider turns one metric's
query into a :class:`~rollout.gates.Reading` (value, samples, window); :mod:`rollout.gates` judges.

Providers, one module each: ``prometheus`` (PromQL over ``/api/v1/query``), ``http`` (any JSON
endpoint, a value picked by a field path) and ``alertmanager``. Each module holds its config model (a
:class:`~rollout.playbook.model.ProviderSpec` with ``kind: Literal[NAME]``), the provider, and its
:class:`~rollout.playbook.plugins.ProviderPlugin`; :data:`rollout.playbook.plugins.PROVIDERS` is the
registry (a package of its own registers through the ``rollout.providers`` entry point group). A target
may bring its own, always there (the embedded service's metrics endpoint:
:mod:`rollout.targets.embedded.provider`, handed over by :func:`rollout.targets.own_providers`).
"""

from __future__ import annotations

from rollout.providers.base import Provider, placeholders
from rollout.providers.sources import MetricSources

__all__ = ["MetricSources", "Provider", "placeholders"]
