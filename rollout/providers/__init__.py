"""Where gate metrics come from. Measuring stays apart from judging: a provider turns one metric's
query into a :class:`~rollout.gates.Reading` (value, samples, window); :mod:`rollout.gates` judges.

Providers, one module each: ``embedded`` (the service's own metrics endpoint, always there),
``prometheus`` (PromQL over ``/api/v1/query``) and ``http`` (any JSON endpoint, a value picked by a
field path), ``alertmanager``. Each module holds its config model (a
:class:`~rollout.playbook.model.ProviderSpec` with ``kind: Literal[NAME]``), the provider, and its
:class:`~rollout.playbook.plugins.ProviderPlugin`; :data:`rollout.playbook.plugins.PROVIDERS` is the
registry (a package of its own registers through the ``rollout.providers`` entry point group).
"""

from __future__ import annotations

from rollout.providers.base import Provider, placeholders
from rollout.providers.embedded import EmbeddedProvider
from rollout.providers.sources import MetricSources

__all__ = ["EmbeddedProvider", "MetricSources", "Provider", "placeholders"]
