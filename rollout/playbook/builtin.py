"""The built-in provider, as the playbook floor knows it: its name, and the :class:`Vocabulary` the
target it belongs to declares (its metric names and how each is judged, the metrics a ``compare`` gate
can judge per cohort, the flag variables a ``flag`` section defaults to, the service's rules on its
own settings).

The embedded target declares its vocabulary in its own folder; :func:`vocabulary` asks the registered
target (:data:`rollout.playbook.plugins.TARGETS`) for it on first use, so this floor never imports the
product or the floors above it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rollout.playbook.plugins import TARGETS

#: the provider that is always there: the embedded service's own metrics endpoint (and its target's name)
EMBEDDED = "embedded"


@dataclass(frozen=True)
class Vocabulary:
    """What a target with a built-in provider declares for the playbook floor."""

    #: the flag and the percentage variables the service obeys (a ``flag`` section's defaults)
    flag_variable: str
    percent_variable: str
    #: metric -> True when higher is better
    metrics: Mapping[str, bool]
    #: a built-in metric's kind (how it is judged and shown)
    kinds: Mapping[str, str]
    #: the metrics a compare gate can judge: how each cohort's figures are read (``unit``, ``count``, ...)
    compare_metrics: Mapping[str, Mapping[str, str]]
    #: metric -> its percentile (a percentile's evidence is its count of calls beyond the alert)
    percentiles: Mapping[str, int]
    #: ``(variable, problem)`` for each variable whose value the service would refuse, judged one by one
    setting_problems: Callable[[Mapping[str, str]], list[tuple[str, str]]]
    #: raise a ConfigError naming the source when the service would refuse the values together
    check_settings: Callable[[Mapping[str, str], str], None]


@functools.cache
def vocabulary() -> Vocabulary:
    """The built-in provider's vocabulary, from the registered ``embedded`` target (loaded once)."""
    declared = getattr(TARGETS.get(EMBEDDED), "vocabulary", None)
    if not isinstance(declared, Vocabulary):
        raise TypeError(f"the {EMBEDDED!r} target declares no Vocabulary")
    return declared
