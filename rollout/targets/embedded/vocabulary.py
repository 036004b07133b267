"""How the embedded service's answers are read: which field of its metrics answer counts a metric's
samples, which metrics come with their spread, and the variable that holds the token it takes a flag
hint with. (What a playbook may name of it is on the playbook floor: :mod:`rollout.playbook.builtin`.)"""

from __future__ import annotations

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
