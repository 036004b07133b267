"""The forecasts ``plan`` and the dashboard show: the traffic (given, or read from the gates'
provider over the last hour when it can say), what is known of the latencies and the control's
error rate, and :func:`rollout.gates.forecast.forecast_steps` over the phase's ramp. Read-only: a
GET to the service or to Prometheus, nothing written."""

from __future__ import annotations

from typing import Any

from rollout.engine.context import RunContext
from rollout.gates.forecast import (
    DEFAULT_REPS,
    Assumptions,
    Breach,
    assumed_latency,
    forecast_steps,
    forecastable,
    parse_traffic,
    ramp_steps,
)
from rollout.playbook.builtin import EMBEDDED
from rollout.playbook.model import GateSet, MetricGate
from rollout.providers import placeholders
from rollout.providers.prometheus import PrometheusMetrics
from rollout.util.errors import ConfigError, MeasurementError
from rollout.util.units import format_duration, parse_rate

#: how far back the traffic is read, and how long a read may take (plan stays fast)
LOOKBACK_S, READ_TIMEOUT_S = 3600.0, 2.0


def parse_breaches(texts: tuple[str, ...] | list[str], gates: list[GateSet]) -> list[Breach]:
    """``--breach success_rate=80%`` (a rate), ``avg_latency_ms=8000`` (ms), ``booking_latency_ms=400``
    (a compare metric's difference), checked against the metrics the ramp's gates judge."""
    known = {m.metric: m for g in gates for m in g.metrics}
    found = []
    for text in texts:
        name, _, value = text.partition("=")
        name = name.strip()
        if not value:
            raise ConfigError(f"--breach {text!r}: write METRIC=VALUE, e.g. success_rate=80%")
        if name not in known:
            raise ConfigError(f"--breach {text!r}: the ramp's gates judge no {name!r} (they judge {', '.join(known)})")
        why = forecastable(known[name])
        if why:
            raise ConfigError(f"--breach {text!r}: {why}")
        try:
            found.append(Breach(name, parse_rate(value.strip().lstrip("+")), text.strip()))
        except ValueError as exc:
            raise ConfigError(f"--breach {text!r}: {exc}") from None
    return found


def _prometheus(provider: PrometheusMetrics, spec: MetricGate, now: float) -> float | None:
    """Events per second over the last hour from a metric's samples query (both cohorts of a compare)."""
    if not spec.samples:
        return None
    queries = [spec.samples]
    if spec.kind == "compare":
        labels = (spec.cohorts.treatment, spec.cohorts.control) if spec.cohorts else ("treatment", "control")
        queries = [spec.samples.replace("$cohort", label) for label in labels]
    total = 0.0
    for query in queries:
        value = provider.query(placeholders(query, LOOKBACK_S, None, promql=True), now)
        if value is None:
            return None
        total += value
    return total / LOOKBACK_S if total > 0 else None


def observed_traffic(
    ctx: RunContext, gates: GateSet, ask_prometheus: bool = True
) -> tuple[float | None, str, Assumptions, list[str]]:
    """(events/s over the last hour or None, where it came from, what is known, said per metric)."""
    builtin = ctx.metrics.providers.get(EMBEDDED)
    own = getattr(builtin, "last_hour", None)
    if own is not None and any(m.provider == EMBEDDED for m in gates.metrics):
        try:
            traffic, assumptions, said = own(gates, LOOKBACK_S, READ_TIMEOUT_S)
        except MeasurementError as exc:
            return None, f"the service could not say ({exc})", Assumptions(), []
        if traffic:
            return traffic, getattr(builtin, "traffic_seen", "its requests over the last hour"), assumptions, said
        return None, getattr(builtin, "traffic_none", "it saw no requests in the last hour"), assumptions, said
    for spec in gates.metrics if ask_prometheus else []:
        provider = ctx.metrics.providers.get(spec.provider)
        if isinstance(provider, PrometheusMetrics) and spec.samples:
            try:
                traffic = _prometheus(provider, spec, ctx.clock.time())
            except MeasurementError as exc:
                return None, f"{spec.provider} could not say ({exc})", Assumptions(), []
            if traffic:
                return traffic, f"{spec.provider}: {spec.metric}'s samples query over the last hour", Assumptions(), []
    return None, "no provider of the ramp's gates can say", Assumptions(), []


def phase_forecast(
    ctx: RunContext, traffic_text: str | None, breach_texts: tuple[str, ...] = (), reps: int = DEFAULT_REPS
) -> dict[str, Any]:
    """The phase's forecast as ``plan --json`` prints it (``steps`` empty when there is no ramp or no
    traffic, with ``unavailable`` saying why)."""
    ramps = ramp_steps(ctx.phase)
    gates = [ctx.playbook.gates[step.gate] for _, step in ramps]
    breaches = parse_breaches(breach_texts, gates)
    if not ramps:
        return {"steps": [], "unavailable": "the phase has no ramp step"}
    assumptions, said = Assumptions(), list[str]()
    if traffic_text is not None:
        try:
            traffic: float | None = parse_traffic(traffic_text)
        except ValueError as exc:
            raise ConfigError(f"--traffic: {exc}") from None
        source = "given with --traffic"
        _, _, assumptions, said = observed_traffic(ctx, gates[0], ask_prometheus=False)
    else:
        traffic, source, assumptions, said = observed_traffic(ctx, gates[0])
    if traffic is None:
        return {"steps": [], "unavailable": f"forecasts need the traffic: --traffic 50/s ({source})"}
    assumed = list(said)
    for gate in gates:
        for spec in gate.metrics:
            if spec.unit == "latency" and forecastable(spec) is None and spec.metric not in assumptions.latency:
                assumed.append(f"{spec.metric}: {assumed_latency(spec).describe()} (assumed: nobody said)")
            if spec.kind == "compare" and spec.unit == "rate" and spec.metric not in assumptions.control_rate:
                assumed.append(f"{spec.metric}: control at 1% (assumed: nobody said)")
    rows = forecast_steps(ctx.playbook, ctx.phase, traffic, breaches, assumptions, reps)
    return {
        "traffic_per_s": traffic,
        "traffic_source": source,
        "assumptions": sorted(set(assumed)),
        "reps": reps,
        "steps": rows,
        "expected_duration_s": rows[-1]["expected_elapsed_s"] if rows else None,
        "warnings": [w for row in rows for w in row["warnings"]],
    }


def _when(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _value(value: float, unit: str, compare: bool) -> str:
    sign = "+" if compare and value >= 0 else ""
    if unit == "rate":
        return f"{sign}{value * 100:.3g}%"
    return f"{sign}{value:.0f} ms" if abs(value) >= 100 else f"{sign}{value:.3g} ms"


def forecast_lines(forecast: dict[str, Any]) -> list[tuple[str, str]]:
    """``plan``'s forecast in words, one (line, style) each."""
    if not forecast.get("steps"):
        return [(f"forecast: {forecast.get('unavailable', 'nothing to forecast')}", "yellow")]
    lines = [
        (
            f"forecast at {forecast['traffic_per_s']:.3g}/s ({forecast['traffic_source']}): earliest pass and "
            f"duration in closed form; breaches and false rollbacks from {forecast['reps']} seeded steps through "
            "the gates' own judges",
            "bold",
        )
    ]
    lines += [(f"  assumed: {a}", "") for a in forecast["assumptions"]]
    for row in forecast["steps"]:
        earliest = row["earliest_pass_s"]
        head = f"  {row['step']} at {row['percent']}% ({row['cohort_traffic_per_s']:.3g}/s in the cohort): " + (
            f"earliest pass {_when(earliest)}" if earliest is not None else "CANNOT DECIDE within hold + max_hold"
        )
        alert = row.get("false_rollback_at_alert")
        if alert:
            bound = f", the test's bound {alert['bound'] * 100:.3g}%" if alert["bound"] is not None else ""
            head += f"; false rollback at the alert {alert['probability'] * 100:.3g}%{bound}"
        lines.append((head, "" if earliest is not None else "bold red"))
        for b in row["breaches"]:
            caught = (
                f"caught by {_when(b['catch_90_s'])} (90%) / {_when(b['catch_99_s'])} (99%)"
                if b["catch_90_s"] is not None
                else f"caught in only {b['caught'] * 100:.0f}% of steps"
            )
            bad = f", about {b['bad_events_median']:.0f} failed before the flag off" if b["bad_events_median"] else ""
            lines.append(
                (
                    f"    {b['metric']} at {_value(b['value'], b['unit'], b['compare'])} "
                    f"({b['breach']}): {caught}{bad}",
                    "",
                )
            )
        for why in row["not_forecast"]:
            lines.append((f"    not forecast: {why}", "dim"))
    lines.append((f"  the ramp, healthy: about {_when(forecast['expected_duration_s'])}", "bold"))
    lines += [(f"warning: {w}", "yellow") for w in forecast["warnings"]]
    return lines
