"""Where gate metrics come from. Measuring stays apart from judging: a provider turns one metric's
query into a :class:`~rollout.gates.Reading` (value, samples, window); :mod:`rollout.gates` judges.

Providers, one module each: ``prometheus`` (PromQL over ``/api/v1/query``), ``http`` (any JSON
endpoint, a value picked by a field path) and ``alertmanager``. :data:`~rollout.providers.sources.KINDS`
is the registry. A target may bring its own (the embedded service's metrics endpoint is in
:mod:`rollout.targets.embedded.provider`).
"""

from __future__ import annotations

from rollout.providers.base import Provider, placeholders
from rollout.providers.sources import KINDS, MetricSources

__all__ = ["KINDS", "MetricSources", "Provider", "placeholders"]
