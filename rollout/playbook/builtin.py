"""The embedded target's vocabulary on the playbook floor: what a playbook may name of the
booking-notification service rollout ships (``rollout serve``) without saying how to read it.

Its metric names and how each is judged (kind, direction, percentile), the metrics a ``compare``
gate can judge per cohort, and the flag variables it obeys (the defaults of a playbook's ``flag``
section), and the service's own rules on its settings (it is the one module outside
:mod:`rollout.targets.embedded` that imports the product). The playbook model reads these when it is
defined and validated (the flag configs' defaults), so they sit on its floor until the embedded
target's registered plugin (:data:`rollout.playbook.plugins.TARGETS`) declares them; how the service's answers are read (which
field counts a metric's samples, the hint's token) is in :mod:`rollout.targets.embedded.vocabulary`.
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
