"""The embedded target's vocabulary: what a playbook may name of the booking-notification service
rollout ships (``rollout serve``) without saying how to read it.

It is the one module of the tool's lower floors that imports the product (for the service's own
rules on its settings). Its metric names and how each is judged, the fields of its metrics answer that count their
samples, the metrics a ``compare`` gate can judge per cohort, and the flag variables it obeys
(the defaults of a playbook's ``flag`` section). The playbook is validated against it; the
embedded provider and target read the service's answers with it. Nothing else in the tool names
the service's metrics or variables.
"""

from __future__ import annotations

from collections.abc import Mapping

from rollout.booking.service.settings import settings_from
from rollout.booking.service.settings import variable_problems as _service_problems

#: the provider that is always there: the embedded service's own metrics endpoint
EMBEDDED = "embedded"
#: the flag and the percentage the service obeys
FLAG_VARIABLE = "WHATSAPP_NOTIFICATIONS_ENABLED"
PERCENT_VARIABLE = "WHATSAPP_ROLLOUT_PERCENT"
#: the token the service accepts a flag hint with (the admin token does too)
HINT_TOKEN_VARIABLE = "ROLLOUT_HINT_TOKEN"

#: metric -> True when higher is better; the service's /api/whatsapp/metrics names
METRICS: dict[str, bool] = {
    "success_rate": True,
    "error_rate": False,
    "avg_latency_ms": False,
    "p95_latency_ms": False,
    "breaker_activations": False,
}
#: metric -> the field of the metrics answer that counts its samples
SAMPLES_OF: dict[str, str] = {
    "success_rate": "attempts",
    "error_rate": "provider_calls",
    "avg_latency_ms": "latency_samples",
    "p95_latency_ms": "latency_samples",
    "breaker_activations": "attempts",
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

#: the built-in means and percentiles (a percentile's evidence is its count of calls beyond the alert)
MEANS = frozenset({"avg_latency_ms"})
PERCENTILES = {"p95_latency_ms": 95}


def setting_problems(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(variable, problem)`` for each variable whose value the service would refuse, judged one by
    one; variables the service does not know pass."""
    return _service_problems(values)


def check_settings(values: Mapping[str, str], source: str) -> None:
    """Raise a ConfigError naming ``source`` when the service would refuse ``values`` together (a
    token when the flag is on)."""
    settings_from(values, source)
