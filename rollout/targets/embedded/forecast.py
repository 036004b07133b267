"""What a forecast may assume from the embedded service's own last hour: its booking traffic, its
latencies and the control cohort's error rates."""

from __future__ import annotations

from rollout.gates.forecast import Assumptions, LatencyModel
from rollout.playbook.model import GateSet
from rollout.targets.embedded.client import EmbeddedClient
from rollout.targets.embedded.vocabulary import COMPARE_METRICS


def last_hour(service: EmbeddedClient, gates: GateSet, lookback: float) -> tuple[float | None, Assumptions, list[str]]:
    """Traffic, latencies and the control's error rates from the embedded service's last hour."""
    answer = service.metrics(lookback)
    window = float(answer.get("window_seconds") or lookback)
    # every booking request is counted in its cohort, the flag on or off (everyone is control when off)
    cohorts = answer.get("cohorts") or {}
    bookings = sum(int((cohorts.get(c) or {}).get("booking_requests") or 0) for c in ("treatment", "control"))
    traffic = bookings / window if bookings else None
    latency: dict[str, LatencyModel] = {}
    control: dict[str, float] = {}
    said = []
    for spec in gates.metrics:
        if spec.metric == "avg_latency_ms" and answer.get("avg_latency_ms") is not None:
            mean, sd = float(answer["avg_latency_ms"]), float(answer.get("latency_sd_ms") or 0.0)
            latency[spec.metric] = LatencyModel.from_moments(mean, sd)
            said.append(f"{spec.metric}: mean {mean:.4g} ms, sd {sd:.4g} ms (the service, last hour)")
        cohort = ((answer.get("cohorts") or {}).get("control")) or {}
        if spec.kind == "compare" and spec.metric == "booking_error_rate" and cohort.get("booking_requests"):
            control[spec.metric] = int(cohort.get("booking_errors") or 0) / int(cohort["booking_requests"])
            said.append(f"{spec.metric}: control at {control[spec.metric] * 100:.2f}% (the service, last hour)")
        fields = COMPARE_METRICS.get(spec.metric, {})
        if spec.kind == "compare" and "mean" in fields and cohort.get(fields["mean"]) is not None:
            mean, sd = float(cohort[fields["mean"]]), float(cohort.get(fields["sd"]) or 0.0)
            latency[spec.metric] = LatencyModel.from_moments(mean, sd)
            said.append(f"{spec.metric}: control mean {mean:.4g} ms, sd {sd:.4g} ms (the service, last hour)")
    return traffic, Assumptions(latency=latency, control_rate=control), said
