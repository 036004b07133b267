"""The embedded service's vocabulary: what a playbook may name of it (its metric names and how each is
judged, the metrics a ``compare`` gate judges per cohort, the flag variables it obeys, its rules on its
own settings), and how its answers are read (which field counts a metric's samples, which metrics come
with their spread, the variable that holds the token it takes a flag hint with).

The playbook floor reads the first part through :func:`rollout.playbook.builtin.vocabulary`, which
asks the registered embedded target for :data:`VOCABULARY` on first use.
"""

from __future__ import annotations

from collections.abc import Mapping

from rollout.booking.service.settings import settings_from
from rollout.booking.service.settings import variable_problems as _service_problems
from rollout.playbook.builtin import Vocabulary

#: the flag and the percentage the service obeys
FLAG_VARIABLE = "WHATSAPP_NOTIFICATIONS_ENABLED"
PERCENT_VARIABLE = "WHATSAPP_ROLLOUT_PERCENT"

#: metric -> True when higher is better; the service's /api/whatsapp/metrics names
METRICS: dict[str, bool] = {
    "success_rate": True,
    "error_rate": False,
    "avg_latency_ms": False,
    "p95_latency_ms": False,
    "breaker_activations": False,
}
#: a built-in metric's kind (how it is judged and shown)
BUILTIN_KINDS: dict[str, str] = {
    "success_rate": "rate",
    "error_rate": "rate",
    "avg_latency_ms": "latency",
    "p95_latency_ms": "latency",
    "breaker_activations": "count",
}

#: the built-in metrics a compare gate can judge: how each cohort's figures are read
COMPARE_METRICS: dict[str, dict[str, str]] = {
    "booking_error_rate": {"unit": "rate", "count": "booking_requests", "events": "booking_errors"},
    "booking_latency_ms": {
        "unit": "latency",
        "count": "booking_requests",
        "mean": "booking_latency_ms",
        "sd": "booking_latency_sd_ms",
    },
    "confirmation_delay_ms": {
        "unit": "latency",
        "count": "confirmations",
        "mean": "confirmation_delay_ms",
        "sd": "confirmation_delay_sd_ms",
    },
}

#: the built-in percentiles (a percentile's evidence is its count of calls beyond the alert)
PERCENTILES = {"p95_latency_ms": 95}


def setting_problems(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(variable, problem)`` for each variable whose value the service would refuse, judged one by
    one; variables the service does not know pass."""
    return _service_problems(values)


def check_settings(values: Mapping[str, str], source: str) -> None:
    """Raise a ConfigError naming ``source`` when the service would refuse ``values`` together (a
    token when the flag is on)."""
    settings_from(values, source)


#: what the playbook floor reads of the service (the built-in provider's metrics, the flag's defaults)
VOCABULARY = Vocabulary(
    flag_variable=FLAG_VARIABLE,
    percent_variable=PERCENT_VARIABLE,
    metrics=METRICS,
    kinds=BUILTIN_KINDS,
    compare_metrics=COMPARE_METRICS,
    percentiles=PERCENTILES,
    setting_problems=setting_problems,
    check_settings=check_settings,
)

#: the token the service accepts a flag hint with (the admin token does too)
HINT_TOKEN_VARIABLE = "ROLLOUT_HINT_TOKEN"

#: metric -> the field of the metrics answer that counts its samples
SAMPLES_OF: dict[str, str] = {
    "success_rate": "attempts",
    "error_rate": "provider_calls",
    "avg_latency_ms": "latency_samples",
    "p95_latency_ms": "latency_samples",
    "breaker_activations": "attempts",
}

#: the built-in means (the metrics answer gives their standard deviation, ``latency_sd_ms``)
MEANS = frozenset({"avg_latency_ms"})
