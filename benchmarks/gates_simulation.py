"""Today's gates (a 95 % Wilson interval, checked at every evaluation) against the new ones (a 99 %
always-valid confidence sequence), side by side on the same simulated traffic.

One simulated ramp step: the cohort sends ``traffic`` messages per second, evenly (the running total
rounded down), each failing with the true error rate from the step's first second. The engine's loop is replayed on a simulated clock:
every ``interval`` the gate judges the error rate over the window since the step began (capped at
``window``), calling the real :func:`rollout.gates.judge`; a fail ends the step (the flag goes
off), a pass after ``hold`` ends it, and a hold past ``hold + max_hold`` ends it for a person. The
gate is the seed's error-rate rule (target 1 %, alert 5 %).

For each cell: the probability of a false rollback (true rate at or below the target), of missing
a breach within the hold (true rate at least twice the alert), the median and p95 time from the
breach to the fail, and the failed sends before the flag went off.

Then guardrails as a family (``--family``): k error-rate guardrails judged together by the real
:func:`rollout.gates.judge_readings`, each guardrail's own traffic, with ``correction: none`` (each at
99 %) and ``bonferroni`` (the 1 % split across the k). Two cases per k (1, 3, 6): every guardrail
exactly at its alert (the boundary: the worst case for a false rollback, since the gate only fails
when it is sure a rate is *beyond* the alert), and one guardrail breached at 10 % with the others
at the target (what the split costs in speed).

And the rank judge for latency (``--rank-only``): one compare latency (target +50 ms, alert +150 ms)
on skewed, heavy-tailed latencies (lognormal, median 300 ms, 2 % of calls 20 times slower), judged
three ways on the same samples: the means' always-valid interval (``judge: mean``), the rank judge
with its error spent over fixed looks (``judge: rank``), and the same rank test at every evaluation
at the full 1 % (what the spending is for).

Usage: python benchmarks/gates_simulation.py [--ramps 1000] [--seed 1] [--family | --family-only | --rank-only]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rollout.gates import FAIL, PASS, Reading, StepCounts, judge, judge_readings
from rollout.playbook.model import GateSet, MetricGate
from rollout.stats import Cohort, mann_whitney_greater

SPEC = MetricGate(metric="error_rate", target=0.01, alert=0.05)
TRAFFIC = (1, 5, 50)
RATES = (0.005, 0.01, 0.02, 0.05, 0.08, 0.15, 0.30, 1.0)
GATES = {"today": ("wilson", 0.95), "new": ("sequential", 0.99)}


@dataclass(frozen=True)
class Settings:
    name: str
    window: float
    min_samples: int
    hold: float
    interval: float
    max_hold: float


SETTINGS = (
    Settings("production", window=300, min_samples=50, hold=1800, interval=60, max_hold=7200),
    Settings("demo", window=10, min_samples=10, hold=4, interval=0.5, max_hold=10),
)


def binomial(n: int, p: float, rng: random.Random) -> int:
    """Failures among ``n`` sends: geometric gaps between failures (cost ~ n * p draws)."""
    if p >= 1.0:
        return n
    if p <= 0.0 or n <= 0:
        return 0
    log_q = math.log1p(-p)
    count, position = 0, -1
    while True:
        position += 1 + int(math.log(1.0 - rng.random()) / log_q)
        if position >= n:
            return count
        count += 1


def even(traffic: float, t: float, interval: float) -> int:
    """Sends in the interval ending at ``t`` when ``traffic`` per second arrive evenly (the running
    total rounded down: 5/s in half-second intervals is 2, 3, 2, 3 ..., 1/s is 0, 1, 0, 1 ...)."""
    return math.floor(traffic * t + 1e-9) - math.floor(traffic * (t - interval) + 1e-9)


def one_step(
    settings: Settings, traffic: int, rate: float, test: str, confidence: float, rng: random.Random
) -> tuple[str, float, int]:
    """(how the step ended: fail / pass / hold, when, failed sends until then) on a simulated clock."""
    chunks: list[tuple[int, int]] = []  # (sends, failures) per interval, oldest first
    failures_total = 0
    t = 0.0
    while True:
        t += settings.interval
        sends = even(traffic, t, settings.interval)
        failed = binomial(sends, rate, rng)
        chunks.append((sends, failed))
        failures_total += failed
        covered = int(min(t, settings.window) / settings.interval + 1e-9) or 1
        recent = chunks[-covered:]
        n = sum(c[0] for c in recent)
        errors = sum(c[1] for c in recent)
        result = judge(
            SPEC, errors / n if n else None, n, settings.min_samples, min(t, settings.window), confidence, test
        )
        if result.verdict == FAIL:
            return "fail", t, failures_total
        if t >= settings.hold and result.verdict == PASS:
            return "pass", t, failures_total
        if t >= settings.hold + settings.max_hold:
            return "hold", t, failures_total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def cell(settings: Settings, traffic: int, rate: float, gate: str, ramps: int, seed: int) -> dict[str, float | None]:
    test, confidence = GATES[gate]
    rng = random.Random(f"{seed}-{settings.name}-{traffic}-{rate}")  # the same traffic for both gates
    ends = [one_step(settings, traffic, rate, test, confidence, rng) for _ in range(ramps)]
    fails = [e for e in ends if e[0] == "fail"]
    times = [e[1] for e in fails]
    return {
        "rollback": len(fails) / ramps,
        "missed": sum(1 for e in ends if e[0] != "fail" or e[1] > settings.hold) / ramps,
        "median_s": statistics.median(times) if times else None,
        "p95_s": percentile(times, 95) if times else None,
        "failed_sends": statistics.median(e[2] for e in fails) if fails else None,
    }


def shown(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "p":
        return f"{value * 100:.1f}%"
    if kind == "s":
        return f"{value:.0f}s" if value >= 10 else f"{value:.1f}s"
    return f"{value:.0f}"


def family_step(
    gates: GateSet, settings: Settings, traffic: int, rates: list[float], rng: random.Random
) -> tuple[str, float]:
    """One ramp step with k guardrails (one true rate each): how it ended and when."""
    history: list[list[tuple[int, int]]] = [[] for _ in rates]
    t = 0.0
    while True:
        t += settings.interval
        sends = even(traffic, t, settings.interval)
        covered = int(min(t, settings.window) / settings.interval + 1e-9) or 1
        readings = []
        for chunks, rate in zip(history, rates, strict=True):
            chunks.append((sends, binomial(sends, rate, rng)))
            recent = chunks[-covered:]
            n, errors = sum(c[0] for c in recent), sum(c[1] for c in recent)
            readings.append(Reading(errors / n if n else None, n, min(t, settings.window)))
        verdict = judge_readings(gates, readings).verdict
        if verdict == FAIL:
            return "fail", t
        if t >= settings.hold and verdict == PASS:
            return "pass", t
        if t >= settings.hold + settings.max_hold:
            return "hold", t


def family_rows(ramps: int, seed: int) -> None:
    settings, traffic = SETTINGS[0], 5
    print(
        f"\nguardrails as a family: {ramps} simulated steps per cell, {settings.name} settings, {traffic} sends/s per "
        "guardrail; error-rate guardrails target 1%, alert 5%, confidence 99%"
    )
    print(
        "| guardrails | correction | any rollback, all at the alert (false) | one at 10%: rolled back | breach->fail median | p95 |"
    )
    print("|---|---|---|---|---|---|")
    for k in (1, 3, 6):
        for correction in ("none", "bonferroni"):
            metrics = [
                MetricGate(
                    metric=f"errors_{i}", provider="p", kind="rate", query="q", samples="s", target=0.01, alert=0.05
                )
                for i in range(k)
            ]
            gates = GateSet(
                window=settings.window, min_samples=settings.min_samples, correction=correction, metrics=metrics
            )
            rng = random.Random(f"{seed}-family-{k}")  # the same traffic for both corrections
            boundary = [family_step(gates, settings, traffic, [SPEC.alert] * k, rng) for _ in range(ramps)]
            rng = random.Random(f"{seed}-family-breach-{k}")
            breach = [
                family_step(gates, settings, traffic, [0.10] + [SPEC.target] * (k - 1), rng) for _ in range(ramps)
            ]
            times = [e[1] for e in breach if e[0] == "fail"]
            print(
                f"| {k} | {correction} | {shown(sum(e[0] == 'fail' for e in boundary) / ramps, 'p')} | "
                f"{shown(len(times) / ramps, 'p')} | {shown(statistics.median(times) if times else None, 's')} | "
                f"{shown(percentile(times, 95) if times else None, 's')} |",
                flush=True,
            )


RANK_SPEC = {"metric": "confirmation_delay_ms", "kind": "compare", "target": 50, "alert": 150}


def latencies(n: int, shift: float, rng: random.Random) -> list[float]:
    return [300 * rng.lognormvariate(0, 0.5) * (20 if rng.random() < 0.02 else 1) + shift for _ in range(n)]


def rank_step(
    shift: float, rng: random.Random, traffic: float = 1.0, window: float = 120, interval: float = 5, hold: float = 300
) -> dict[str, float | None]:
    """One step; when each judge first failed (None: never)."""
    gates = {
        j: GateSet(window=window, min_samples=20, metrics=[MetricGate(**RANK_SPEC, judge=j)]) for j in ("mean", "rank")
    }
    counts = {j: StepCounts() for j in gates}
    chunks: list[tuple[list[float], list[float]]] = []
    failed: dict[str, float | None] = {"mean": None, "rank": None, "naive": None}
    t = 0.0
    while t < hold:
        t += interval
        k = int(traffic * interval)
        chunks.append((latencies(k, shift, rng), latencies(k, 0.0, rng)))
        recent = chunks[-int(window / interval) :]
        treatment = [v for c in recent for v in c[0]]
        control = [v for c in recent for v in c[1]]

        def cohort(values: list[float]) -> Cohort:
            mean = statistics.fmean(values)
            return Cohort(mean, len(values), statistics.pstdev(values, mean))

        for name in ("mean", "rank"):
            if failed[name] is None:
                reading = Reading(
                    None,
                    len(control),
                    min(t, window),
                    cohorts=(cohort(treatment), cohort(control)),
                    percent=50,
                    cohort_samples=(treatment, control),
                )
                if judge_readings(gates[name], [reading], counts=counts[name]).verdict == FAIL:
                    failed[name] = t
        if failed["naive"] is None and len(control) >= 20 and mann_whitney_greater(treatment, control, 150) < 0.01:
            failed["naive"] = t
    return failed


def rank_rows(ramps: int, seed: int) -> None:
    print(
        f"\nrank judge: {ramps} simulated steps per cell; 1 sample/s per cohort, 2 m window, a look every 5 s, "
        "5 m hold (60 evaluations); compare latency target +50 ms, alert +150 ms, confidence 99%"
    )
    print(
        "| true shift | mean (always-valid): failed | median time | rank (spent over looks): failed | median time | rank at every look: failed | median time |"
    )
    print("|---|---|---|---|---|---|---|")
    for shift in (0.0, 150.0, 300.0, 600.0):
        rng = random.Random(f"{seed}-rank-{shift}")
        ends = [rank_step(shift, rng) for _ in range(ramps)]
        cells = []
        for name in ("mean", "rank", "naive"):
            times = [e[name] for e in ends if e[name] is not None]
            cells.append(
                f"{shown(len(times) / ramps, 'p')} | {shown(statistics.median(times) if times else None, 's')}"
            )
        label = {0.0: "none (0 ms)", 150.0: "+150 ms (at the alert)"}.get(shift, f"+{shift:.0f} ms")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ramps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--family", action="store_true", help="also simulate guardrails as a family")
    parser.add_argument("--family-only", action="store_true", help="only the family simulation")
    parser.add_argument("--rank-only", action="store_true", help="only the rank judge simulation")
    args = parser.parse_args()
    started = time.monotonic()
    if args.rank_only:
        rank_rows(args.ramps, args.seed)
        print(f"({time.monotonic() - started:.0f} s)")
        return
    if args.family_only:
        family_rows(args.ramps, args.seed)
        print(f"({time.monotonic() - started:.0f} s)")
        return
    print(
        f"{args.ramps} simulated ramp steps per cell; error-rate gate target 1%, alert 5%; "
        "today = 95% Wilson at every look, new = 99% always-valid confidence sequence"
    )
    print(
        "| settings | sends/s | true rate | rollback today | rollback new | missed today | missed new | "
        "breach->fail median today / new | p95 today / new | failed sends today / new |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for settings in SETTINGS:
        for traffic in TRAFFIC:
            for rate in RATES:
                old = cell(settings, traffic, rate, "today", args.ramps, args.seed)
                new = cell(settings, traffic, rate, "new", args.ramps, args.seed)
                breach = rate >= 2 * SPEC.alert
                healthy = rate <= SPEC.target
                print(
                    f"| {settings.name} | {traffic} | {rate * 100:g}% | {shown(old['rollback'], 'p')}"
                    f"{' (false)' if healthy else ''} | {shown(new['rollback'], 'p')}"
                    f"{' (false)' if healthy else ''} | "
                    f"{shown(old['missed'], 'p') if breach else ''} | {shown(new['missed'], 'p') if breach else ''} | "
                    f"{shown(old['median_s'], 's')} / {shown(new['median_s'], 's')} | "
                    f"{shown(old['p95_s'], 's')} / {shown(new['p95_s'], 's')} | "
                    f"{shown(old['failed_sends'], 'n')} / {shown(new['failed_sends'], 'n')} |",
                    flush=True,
                )
    if args.family:
        family_rows(args.ramps, args.seed)
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
