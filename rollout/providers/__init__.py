"""Where gate metrics come from. Measuring stays apart from judging: a provider turns one metric's
query into a :class:`~rollout.gates.Reading` (value, samples, window); :mod:`rollout.gates` judges.

Providers, one module each: ``embedded`` (the service's own metrics endpoint, always there),
``prometheus`` (PromQL over ``/api/v1/query``) and ``http`` (any JSON endpoint, a value picked by a
field path). :data:`~rollout.providers.sources.KINDS` is the registry.
"""

from __future__ import annotations

from rollout.providers.base import Provider, placeholders
from rollout.providers.embedded import EmbeddedProvider
from rollout.providers.sources import KINDS, MetricSources

__all__ = ["KINDS", "EmbeddedProvider", "MetricSources", "Provider", "placeholders"]
