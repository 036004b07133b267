"""Where gate metrics come from. Measuring stays apart from judging: a provider turns one metric's
query into a :class:`~rollout.gates.Reading` (value, samples, window); :mod:`rollout.gates` judges.

Providers: ``embedded`` (the service's ``/api/whatsapp/metrics``, always there), ``prometheus``
(PromQL over ``/api/v1/query``) and ``http`` (any JSON endpoint, a value picked by a field path).
"""

from __future__ import annotations

from rollout.metrics.sources import MetricSources, placeholders

__all__ = ["MetricSources", "placeholders"]
