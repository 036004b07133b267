"""An alert metric judged: firing fails, a silenced or pending alert holds, quiet passes. The verdict
names the alert and the labels of what fires. No answer at all (the rule not loaded, the source
unreachable) never reaches here: the provider says so, and it is a hold like any missing data."""

from __future__ import annotations

from rollout.gates.results import FAIL, HOLD, PASS, Alerts, MetricResult, Reading
from rollout.playbook.model import MetricGate

#: how many firing series a reason lists before it says "and N more"
SHOWN = 3


def labels(series: dict[str, str]) -> str:
    """A series' labels as Prometheus writes them, without the alert's name and state."""
    kept = {k: v for k, v in sorted(series.items()) if k not in ("alertname", "alertstate", "__name__")}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in kept.items()) + "}"


def _listed(found: tuple[dict[str, str], ...]) -> str:
    shown = "; ".join(labels(s) for s in found[:SHOWN])
    return shown + (f"; and {len(found) - SHOWN} more" if len(found) > SHOWN else "")


def judge_alert(spec: MetricGate, reading: Reading) -> MetricResult:
    """``spec``'s alert from ``reading.alerts``: fail while any matching series fires."""
    name = f"alert {spec.alertname}" + (f"{{{', '.join(spec.matchers)}}}" if spec.matchers else "")
    alerts = reading.alerts or Alerts("")
    where = f" in {alerts.source}" if alerts.source else ""

    def result(verdict: str, reason: str, value: float | None) -> MetricResult:
        return MetricResult(
            spec.metric,
            verdict,
            value,
            0.0,
            1.0,
            1,
            1,
            reading.window,
            f"{spec.metric}: {reason}",
            unit="count",
            provider=spec.provider,
        )

    if reading.alerts is None:
        return result(HOLD, f"{name}: no data{where}; no data is never a pass", None)
    if alerts.firing:
        count = len(alerts.firing)
        return result(FAIL, f"{name} FIRING{where} ({count} series: {_listed(alerts.firing)})", float(count))
    if alerts.suppressed:
        return result(
            HOLD,
            f"{name} fires but is silenced or inhibited{where} ({_listed(alerts.suppressed)}): "
            "a suppressed alert hides what it would say, so it holds",
            None,
        )
    if alerts.pending:
        return result(
            HOLD, f"{name} pending{where} ({_listed(alerts.pending)}): its condition holds, not yet for its `for:`", 0.0
        )
    return result(PASS, f"{name} not firing{where}", 0.0)
