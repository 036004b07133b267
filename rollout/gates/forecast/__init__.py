"""What a ramp's gates will do at a given traffic, before anything runs: pure, no I/O, no clock.

For every ramp step of a phase, :func:`forecast_steps` says

* **the earliest pass**: the first evaluation past the hold at which every deciding metric has
  ``min_samples`` in its window (and, with ``pass_when: interval``, a healthy interval beyond its
  target). Closed form: traffic is taken to arrive evenly.
* **the time to catch a breach** (each guardrail at twice its alert, and any breach the caller names)
  with 90 % and 99 % probability, the share of steps that catch it at all, and the bad events (failed
  sends) before the flag goes off;
* **the chance of a false rollback** of a step whose guardrails all sit exactly at their alerts (the
  worst case: a gate fails only when it is sure a value lies *beyond* the alert), beside the bound
  the test guarantees (``1 - confidence`` per guardrail, or for the family with Bonferroni);
* **the phase's expected duration** when healthy, and a **warning** naming the setting to change when
  a step cannot decide within its ``max_hold``.

The breach and false-rollback figures come from a seeded simulation of the step **through the same
judges the engine calls** (:func:`~rollout.gates.judge.judge`, :func:`~rollout.gates.compare.judge_difference`,
and for the rank judge its own test, :func:`~rollout.stats.mann_whitney_greater`, at its looks): the
simulation draws what a provider would read at every evaluation (counts per cohort, sums and sums of
squares of latencies, rank samples) and asks the judge. Rate verdicts are remembered per (count,
samples), so a step costs a dictionary look-up per evaluation; latency windows with many samples are
drawn as their mean (normal, by the central limit theorem) with the model's spread, and each figure
says which. ``benchmarks/gates_simulation.py`` measures the same cells by brute force;
``tests/gates/forecast/test_forecast.py`` holds the two within 15 %.

Traffic is the overall rate of the target's events (bookings/s, requests/s). A metric is fed by the
cohort's share of it (the percentage), a compare metric by both cohorts' shares; counts, gauges and
percentiles are not forecast (their breaches need a model of the events themselves) and are named so.
"""

from __future__ import annotations

from rollout.gates.forecast.figures import (
    CATCH_QUANTILES,
    DEFAULT_REPS,
    earliest_pass,
    family_bound,
    forecast_step,
    forecast_steps,
    ramp_steps,
    simulate,
)
from rollout.gates.forecast.model import (
    Assumptions,
    Breach,
    LatencyModel,
    arrivals,
    assumed_latency,
    covered,
    parse_traffic,
    twice_the_alert,
)
from rollout.gates.forecast.simulation import decides, forecastable

__all__ = [
    "CATCH_QUANTILES",
    "DEFAULT_REPS",
    "Assumptions",
    "Breach",
    "LatencyModel",
    "arrivals",
    "assumed_latency",
    "covered",
    "decides",
    "earliest_pass",
    "family_bound",
    "forecast_step",
    "forecast_steps",
    "forecastable",
    "parse_traffic",
    "ramp_steps",
    "simulate",
    "twice_the_alert",
]
