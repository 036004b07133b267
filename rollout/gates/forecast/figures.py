"""The figures of each ramp step: the earliest pass and the warnings in closed form, the breaches and
the false rollbacks from :mod:`~rollout.gates.forecast.simulation`; :func:`forecast_steps` for a phase."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from typing import Any

from rollout.gates.forecast.model import Assumptions, Breach, samples_in_window, twice_the_alert
from rollout.gates.forecast.simulation import (
    SAMPLE_BUDGET,
    Simulation,
    StepSettings,
    Track,
    decides,
    forecastable,
    shares_of,
)
from rollout.gates.judge import judge
from rollout.gates.results import PASS
from rollout.playbook.model import GateSet, MetricGate, Phase, Playbook, RampStep
from rollout.util.units import format_duration

#: simulated steps per figure in ``plan`` (the tests and the benchmark comparison ask for more)
DEFAULT_REPS = 150

#: quantiles reported for the time to catch a breach
CATCH_QUANTILES = (0.9, 0.99)


def _quantile(times: list[float], q: float, reps: int) -> float | None:
    """The time by which a share ``q`` of all ``reps`` steps had failed (None: fewer did)."""
    needed = math.ceil(q * reps - 1e-9)
    if needed <= 0 or len(times) < needed:
        return None
    return sorted(times)[needed - 1]


def _can_pass(gates: GateSet, spec: MetricGate, n: int, nc: int, t: float) -> bool:
    """Could ``spec`` pass with ``n`` samples (``nc`` in the control) at ``t``, all healthy?"""
    minimum = gates.min_samples if spec.min_samples is None else spec.min_samples
    if t < spec.initial_delay:
        return False
    if spec.kind == "compare":
        return min(n, nc) >= max(minimum, 1)
    if spec.unit == "rate":
        perfect = 1.0 if spec.higher else 0.0
        window = spec.window or gates.window
        verdict = judge(
            spec, perfect, n, minimum, window, gates.metric_confidence(spec), gates.test, pass_when=gates.pass_when
        ).verdict
        return n > 0 and verdict == PASS
    return n >= max(minimum, 1)


def earliest_pass(gates: GateSet, step: RampStep, percent: int, traffic: float, interval: float) -> float | None:
    """The first evaluation past the hold at which every deciding metric could pass (None: not
    within ``hold + max_hold``). Closed form: even arrivals, the cohort's share."""
    horizon = step.hold + step.max_hold
    deciding = [m for m in gates.metrics if decides(m, percent)]
    j = max(0, math.ceil(step.hold / interval - 1e-9))
    while j * interval <= horizon + 1e-9:
        t = j * interval
        ok = True
        for spec in deciding:
            window = spec.window or gates.window
            share_t, share_c = shares_of(percent)
            n = samples_in_window(traffic * share_t, t, window, interval)
            nc = samples_in_window(traffic * share_c, t, window, interval)
            if not _can_pass(gates, spec, n, nc, t):
                ok = False
                break
        if ok:
            return t
        j += 1
    return None


def _limiting(gates: GateSet, step: RampStep, percent: int, traffic: float) -> str:
    """Which setting keeps a step from deciding, in words a person can act on."""
    horizon = step.hold + step.max_hold
    for spec in gates.metrics:
        if not decides(spec, percent):
            continue
        minimum = gates.min_samples if spec.min_samples is None else spec.min_samples
        window = spec.window or gates.window
        shares = shares_of(percent)
        share = min(shares) if spec.kind == "compare" else shares[0]
        rate = traffic * share
        reachable = rate * min(window, horizon)
        if reachable >= minimum and spec.unit != "rate":
            continue
        if rate <= 0:
            return f"{spec.metric} sees no traffic at {percent}%"
        if reachable < minimum:
            who = "its smaller cohort" if spec.kind == "compare" else f"the {percent}% cohort"
            fixes = [
                f"min_samples to at most {max(1, math.floor(reachable))}",
                f"window to at least {format_duration(math.ceil(minimum / rate))}"
                + (
                    f" (and max_hold to at least {format_duration(math.ceil(minimum / rate - step.hold))})"
                    if minimum / rate > horizon
                    else ""
                ),
                f"more traffic (about {minimum / min(window, horizon) / share:.2g}/s overall)",
            ]
            return (
                f"{spec.metric} needs {minimum} samples in its {format_duration(window)} window but "
                f"{who} brings {rate:.2g}/s ({math.floor(reachable)} at most); change " + ", or ".join(fixes)
            )
        if spec.unit == "rate" and gates.pass_when == "interval":
            return (
                f"{spec.metric} cannot be sure it is beyond its target with pass_when: interval at {rate:.2g} "
                "samples/s; change pass_when to estimate, or raise the window and max_hold"
            )
    return f"the gates cannot all pass within hold + max_hold ({format_duration(horizon)}): raise max_hold"


def _catch(sim: Simulation, tracks: list[Track], reps: int, rng: random.Random) -> dict[str, Any]:
    ends = sim.run(tracks, reps, rng)
    times = [t for end, t, _ in ends if end in ("fail", "stop")]
    bad = [b for end, _, b in ends if end in ("fail", "stop")]
    return {
        "caught": len(times) / reps,
        "within_hold": sum(1 for t in times if t <= sim.step.hold + 1e-9) / reps,
        "catch_90_s": _quantile(times, 0.9, reps),
        "catch_99_s": _quantile(times, 0.99, reps),
        "median_s": statistics.median(times) if times else None,
        "p95_s": _quantile(times, 0.95, len(times)) if times else None,
        "bad_events_median": statistics.median(bad) if bad and tracks[0].spec.unit == "rate" else None,
        "ended": {how: sum(1 for end, _, _ in ends if end == how) / reps for how in ("fail", "stop", "pass", "hold")},
    }


def _reps_for(tracks: list[Track], sim: Simulation, reps: int) -> int:
    """Fewer steps when latencies are drawn call by call, so a figure costs a bounded time."""
    calls = 0
    for track in tracks:
        if track.method == "calls drawn one by one":
            shares = shares_of(sim.step.percent)
            calls += sum(sum(sim._arrivals(s)) for s in (shares if track.spec.kind == "compare" else shares[:1]))
    return reps if not calls else max(50, min(reps, SAMPLE_BUDGET // calls))


def family_bound(gates: GateSet, deciding: Sequence[MetricGate]) -> float | None:
    """What the test guarantees for a false rollback with every guardrail at its alert: ``1 -
    confidence`` per guardrail (summed), or for the family with Bonferroni ``1 - confidence``
    (Ville's inequality and the union bound); None for ``test: wilson``, which bounds nothing."""
    if gates.test != "sequential" or gates.confidence <= 0:
        return None
    guards = [m for m in deciding if m.role == "guardrail"]
    return min(1.0, sum(1.0 - gates.metric_confidence(m) for m in guards))


def forecast_step(
    gates: GateSet,
    step: RampStep,
    percent: int,
    traffic: float,
    interval: float,
    breaches: Sequence[Breach] = (),
    assumptions: Assumptions | None = None,
    reps: int = DEFAULT_REPS,
    seed: int = 1,
) -> dict[str, Any]:
    """Every figure for one percentage of a ramp (see the module docstring)."""
    assumptions = assumptions or Assumptions()
    settings = StepSettings(percent, step.hold, interval, step.max_hold)
    deciding = [m for m in gates.metrics if decides(m, percent)]
    skipped = [why for m in deciding if (why := forecastable(m))]
    simulated = [m for m in deciding if forecastable(m) is None]
    earliest = earliest_pass(gates, step, percent, traffic, interval)
    out: dict[str, Any] = {
        "percent": percent,
        "hold_s": step.hold,
        "max_hold_s": step.max_hold,
        "interval_s": interval,
        "cohort_traffic_per_s": traffic * percent / 100.0,
        "earliest_pass_s": earliest,
        "earliest_pass_method": "closed form (even arrivals)",
        "decides_within_max_hold": earliest is not None,
        "not_forecast": skipped,
        "breaches": [],
        "warnings": [],
    }
    if earliest is None:
        out["warnings"].append(
            f"{percent}% at {traffic:.3g}/s cannot decide within its hold + max_hold "
            f"({format_duration(step.hold + step.max_hold)}): {_limiting(gates, step, percent, traffic)}"
        )
    named = {b.metric: b for b in breaches}
    scenarios: list[tuple[MetricGate, Breach]] = []
    for spec in simulated:
        doubled = twice_the_alert(spec)
        if doubled is not None:
            scenarios.append((spec, Breach(spec.metric, doubled, "2x alert")))
        if spec.metric in named:
            scenarios.append((spec, named[spec.metric]))
    sim = Simulation(gates, settings, traffic, assumptions)
    at_target = {m.metric: sim.track(m, None) for m in simulated}
    for k, (spec, breach) in enumerate(scenarios):
        first = sim.track(spec, breach.value)
        tracks = [first, *(at_target[m.metric] for m in simulated if m is not spec)]
        n = _reps_for(tracks, sim, reps)
        figures = _catch(sim, tracks, n, random.Random(f"{seed}-{percent}-{k}-{spec.metric}"))
        out["breaches"].append(
            {
                "metric": spec.metric,
                "breach": breach.label,
                "value": breach.value,
                "unit": spec.unit,
                "compare": spec.kind == "compare",
                "role": spec.role,
                **figures,
                "method": f"simulated: {n} seeded steps through the gate's judges ({first.method})",
            }
        )
        if figures["catch_90_s"] is None and spec.role == "guardrail":
            out["warnings"].append(
                f"{percent}%: a breach of {spec.metric} at {breach.label} is caught within the step in only "
                f"{figures['caught'] * 100:.0f}% of steps; raise the traffic or the window, or lower min_samples"
            )
    guards = [m for m in simulated if m.role == "guardrail"]
    if guards:
        tracks = [sim.track(m, m.alert) for m in guards]
        n = _reps_for(tracks, sim, reps)
        ends = sim.run(tracks, n, random.Random(f"{seed}-{percent}-alert"))
        rolled = sum(1 for end, _, _ in ends if end == "fail") / n
        out["false_rollback_at_alert"] = {
            "probability": rolled,
            "steps": n,
            "bound": family_bound(gates, guards),
            "guardrails": [m.metric for m in guards],
            # the test's bound covers one growing sample; a window shorter than the step slides, and
            # each new window is a fresh look the bound does not cover
            "window_slides": any((m.window or gates.window) < step.hold + step.max_hold for m in guards),
            "method": f"simulated: {n} seeded steps, every guardrail exactly at its alert; the bound is the test's",
        }
    return out


def simulate(
    gates: GateSet,
    step: RampStep,
    percent: int,
    traffic: float,
    truths: dict[str, float],
    interval: float,
    assumptions: Assumptions | None = None,
    reps: int = DEFAULT_REPS,
    seed: int = 1,
) -> dict[str, Any]:
    """One scenario of one step: each metric named in ``truths`` at that true value, the other deciding
    metrics at their target. How the steps ended (``ended``: fail, stop, pass, hold shares), the share
    that failed within the hold, the median and 95th percentile time to the fail, the quantiles of
    :data:`CATCH_QUANTILES`, and the first named metric's bad events before the fail (a rate's)."""
    sim = Simulation(
        gates, StepSettings(percent, step.hold, interval, step.max_hold), traffic, assumptions or Assumptions()
    )
    deciding = [m for m in gates.metrics if decides(m, percent) and forecastable(m) is None]
    named = [m for m in deciding if m.metric in truths]
    tracks = [sim.track(m, truths[m.metric]) for m in named]
    tracks += [sim.track(m, None) for m in deciding if m.metric not in truths]
    if not tracks:
        raise ValueError("no metric of the gate set can be simulated")
    return _catch(sim, tracks, reps, random.Random(f"{seed}-{percent}-{sorted(truths.items())}"))


def ramp_steps(phase: Phase) -> list[tuple[int, RampStep]]:
    """The ramp steps of ``phase`` with their index."""
    return [(i, s) for i, s in enumerate(phase.steps) if isinstance(s, RampStep)]


def forecast_steps(
    playbook: Playbook,
    phase: Phase,
    traffic: float,
    breaches: Sequence[Breach] = (),
    assumptions: Assumptions | None = None,
    reps: int = DEFAULT_REPS,
    seed: int = 1,
) -> list[dict[str, Any]]:
    """One dict per ramp percentage of ``phase`` at ``traffic`` events per second overall: the
    figures of :func:`forecast_step` with the step's label, and ``expected_duration_s``, the healthy
    phase's running total (each step ends at its earliest pass, or after hold + max_hold). This is
    what ``plan`` prints and what the dashboard shows per step."""
    rows: list[dict[str, Any]] = []
    elapsed = 0.0
    for index, step in ramp_steps(phase):
        gates = playbook.gates[step.gate]
        interval = step.interval or playbook.interval
        for percent in step.percentages:
            row = forecast_step(gates, step, percent, traffic, interval, breaches, assumptions, reps, seed)
            spent = row["earliest_pass_s"]
            elapsed += spent if spent is not None else step.hold + step.max_hold
            label = step.name or f"ramp #{index + 1}"
            rows.append(
                {
                    "step": label,
                    "step_index": index + 1,
                    **row,
                    "expected_duration_s": spent if spent is not None else step.hold + step.max_hold,
                    "expected_elapsed_s": elapsed,
                    "on_hold_timeout": step.on_hold_timeout,
                }
            )
    return rows
