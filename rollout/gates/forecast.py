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
``tests/test_forecast.py`` holds the two within 15 %.

Traffic is the overall rate of the target's events (bookings/s, requests/s). A metric is fed by the
cohort's share of it (the percentage), a compare metric by both cohorts' shares; counts, gauges and
percentiles are not forecast (their breaches need a model of the events themselves) and are named so.
"""

from __future__ import annotations

import math
import random
import statistics
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from typing import Any

from rollout.gates.compare import judge_difference
from rollout.gates.judge import judge
from rollout.gates.rank import MAX_LOOKS
from rollout.gates.results import FAIL, HOLD, PASS
from rollout.playbook.builtin import EMBEDDED, PERCENTILES
from rollout.playbook.model import GateSet, MetricGate, Phase, Playbook, RampStep
from rollout.stats import Cohort, mann_whitney_greater
from rollout.util.units import format_duration

#: simulated steps per figure in ``plan`` (the tests and the benchmark comparison ask for more)
DEFAULT_REPS = 150
#: at most this many simulated samples per figure when latencies are drawn call by call
SAMPLE_BUDGET = 3_000_000
#: a cohort whose step sees more calls than this is drawn as window means (normal), not call by call
PER_CALL_LIMIT = 2_000
#: the embedded service hands the rank judge the newest 1,000 samples per cohort
RANK_SAMPLE_CAP = 1000
#: quantiles reported for the time to catch a breach
CATCH_QUANTILES = (0.9, 0.99)


@dataclass(frozen=True)
class LatencyModel:
    """How one cohort's latencies (ms) are spread: lognormal around ``median`` with log-sd ``sigma``;
    ``tail_share`` of calls ``tail_factor`` times slower (a heavy tail)."""

    median: float
    sigma: float = 0.5
    tail_share: float = 0.0
    tail_factor: float = 1.0

    @classmethod
    def from_moments(cls, mean: float, sd: float) -> LatencyModel:
        """The lognormal with this mean and standard deviation (no extra tail)."""
        mean = max(mean, 1e-9)
        sigma2 = math.log(1.0 + (sd / mean) ** 2) if sd > 0 else 0.0
        return cls(mean / math.exp(sigma2 / 2), math.sqrt(sigma2))

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2) * (1 + self.tail_share * (self.tail_factor - 1))

    @property
    def sd(self) -> float:
        second = self.median**2 * math.exp(2 * self.sigma**2) * (1 + self.tail_share * (self.tail_factor**2 - 1))
        return math.sqrt(max(second - self.mean**2, 0.0))

    def scaled(self, mean: float) -> LatencyModel:
        """The same shape with this mean."""
        factor = mean / self.mean if self.mean > 0 else 1.0
        return LatencyModel(self.median * factor, self.sigma, self.tail_share, self.tail_factor)

    def draw(self, rng: random.Random) -> float:
        value = self.median * rng.lognormvariate(0.0, self.sigma)
        return value * self.tail_factor if self.tail_share and rng.random() < self.tail_share else value

    def describe(self) -> str:
        tail = f", {self.tail_share * 100:g}% of calls {self.tail_factor:g}x slower" if self.tail_share else ""
        return f"lognormal, median {self.median:.4g} ms, log-sd {self.sigma:.2g}{tail} (mean {self.mean:.4g} ms)"


@dataclass(frozen=True)
class Breach:
    """A true value to forecast the catch of: ``value`` is a rate (0-1), a mean latency in ms, or a
    compare metric's difference (treatment minus control)."""

    metric: str
    value: float
    label: str = "named"


@dataclass(frozen=True)
class Assumptions:
    """What the forecast cannot read from the playbook: each latency metric's spread (the control
    cohort's for a compare metric) and each compare rate's control rate. Missing ones are assumed and
    said in :attr:`assumed`."""

    latency: dict[str, LatencyModel] = field(default_factory=dict)
    control_rate: dict[str, float] = field(default_factory=dict)


def arrivals(rate: float, interval: float, chunks: int) -> list[int]:
    """Samples arriving in each of ``chunks`` intervals when ``rate`` per second arrive evenly (the
    running total rounded down, so 0.5/s gives one sample every other second)."""
    total = [math.floor(rate * interval * j + 1e-9) for j in range(chunks + 1)]
    return [b - a for a, b in pairwise(total)]


def covered(t: float, window: float, interval: float) -> int:
    """How many of the newest intervals the window at ``t`` covers (never before the step began)."""
    return int(min(t, window) / interval + 1e-9) or 1


class _Binomial:
    """Binomial draws by inverse CDF, one table per (n, p): a uniform number and a bisection."""

    def __init__(self) -> None:
        self._tables: dict[tuple[int, float], tuple[int, list[float]]] = {}

    def table(self, n: int, p: float) -> tuple[int, list[float]]:
        """(the lowest count kept, the CDF from there): a draw is ``low + bisect_left(cdf, u)``."""
        if n <= 0 or p <= 0.0:
            return 0, [2.0]
        if p >= 1.0:
            return n, [2.0]
        table = self._tables.get((n, p))
        if table is None:
            table = self._tables[(n, p)] = self._table(n, p)
        return table

    @staticmethod
    def _table(n: int, p: float) -> tuple[int, list[float]]:
        spread = 12 * math.sqrt(n * p * (1 - p)) + 3
        low, high = max(0, math.floor(n * p - spread)), min(n, math.ceil(n * p + spread))
        head = math.lgamma(n + 1)
        log_p, log_q = math.log(p), math.log1p(-p)
        weights = [
            math.exp(head - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q)
            for k in range(low, high + 1)
        ]
        total, running, cdf = sum(weights), 0.0, []
        for w in weights:
            running += w
            cdf.append(running / total)
        cdf[-1] = 2.0  # every uniform number lands inside
        return low, cdf


#: a verdict as a small number, worst last
_CODE = {PASS: 0, HOLD: 1, FAIL: 2}


@dataclass
class _Track:
    """One deciding metric in a simulated step: ``run(rng, evals)`` draws what a provider would read
    at each of the first ``evals`` evaluations and returns the judge's verdicts (0 pass, 1 hold, 2
    fail) and, for a rate, the bad events so far at each evaluation."""

    spec: MetricGate
    run: Callable[[random.Random, int], tuple[list[int], list[int] | None]]
    method: str


@dataclass(frozen=True)
class _Step:
    """A ramp step's settings as the simulation needs them."""

    percent: int
    hold: float
    interval: float
    max_hold: float

    @property
    def chunks(self) -> int:
        return max(1, math.ceil((self.hold + self.max_hold) / self.interval - 1e-9))


def _shares(percent: int) -> tuple[float, float]:
    """(treatment, control) shares of the traffic; a metric that is not a compare sees the first."""
    return percent / 100.0, 1.0 - percent / 100.0


def decides(spec: MetricGate, percent: int) -> bool:
    """Does ``spec`` take part in a step's decision at ``percent``? (Shadows never; a compare metric
    not at 0 or 100 %, where there is nobody to compare with.)"""
    if spec.role == "shadow":
        return False
    return not (spec.kind == "compare" and percent in (0, 100))


def forecastable(spec: MetricGate) -> str | None:
    """None when the forecast can simulate ``spec``; else why not."""
    unit = spec.unit
    if unit in ("count", "gauge"):
        return f"{spec.metric}: a {unit} is not forecast (its breach depends on events no traffic figure says)"
    if spec.provider == EMBEDDED and spec.metric in PERCENTILES:
        return f"{spec.metric}: a percentile is not forecast (its value needs every call)"
    return None


def _value_edges(verdict_at: Callable[[float], str], target: float, alert: float, scale: float) -> tuple[float, float]:
    """(the value above which the judge fails, the value below which it passes) for a metric whose
    verdict worsens as its value grows; each is one bisection (inf / -inf: never)."""

    def edge(inside: float, outside: float, wanted: str) -> float:
        for _ in range(40):
            middle = (inside + outside) / 2
            inside, outside = (middle, outside) if verdict_at(middle) == wanted else (inside, middle)
        return outside

    high, low = alert + 1e3 * scale, target - 1e3 * scale
    fail = edge(high, alert, FAIL) if verdict_at(high) == FAIL else math.inf
    passing = edge(low, target, PASS) if verdict_at(low) == PASS else -math.inf
    return fail, passing


class _Sim:
    """Builds the tracks of one step's metrics and runs seeded steps through them."""

    def __init__(self, gates: GateSet, step: _Step, traffic: float, assumptions: Assumptions) -> None:
        self.gates, self.step, self.traffic, self.assumptions = gates, step, traffic, assumptions
        self.binomial = _Binomial()
        self.evaluations = [(j + 1) * step.interval for j in range(step.chunks)]
        #: the judges' edges, by metric and sample counts: shared by every scenario of the step
        self.edges: dict[tuple[Any, ...], tuple[float, float]] = {}

    def min_samples(self, spec: MetricGate) -> int:
        return self.gates.min_samples if spec.min_samples is None else spec.min_samples

    def window(self, spec: MetricGate) -> float:
        return spec.window or self.gates.window

    def judged_with(self, spec: MetricGate) -> tuple[float, int, str]:
        """(confidence, min_samples, pass_when) as judge_readings gives them to ``spec``'s judge."""
        return self.gates.metric_confidence(spec), self.min_samples(spec), self.gates.pass_when

    def _covered(self, spec: MetricGate) -> list[int]:
        window = self.window(spec)
        return [covered(t, window, self.step.interval) for t in self.evaluations]

    def _arrivals(self, share: float) -> list[int]:
        return arrivals(self.traffic * share, self.step.interval, self.step.chunks)

    def track(self, spec: MetricGate, truth: float | None) -> _Track:
        """The track of ``spec`` at the true value ``truth`` (None: at its target)."""
        value = spec.target if truth is None else truth
        if spec.kind == "compare" and spec.judge == "rank":
            return self._rank(spec, value)
        if spec.kind == "compare" and spec.unit == "rate":
            return self._compare_rate(spec, value)
        if spec.kind == "compare":
            return self._compare_mean(spec, value)
        if spec.unit == "rate":
            return self._rate(spec, value)
        return self._mean(spec, value)

    # --- counts --------------------------------------------------------------------------------------
    def _counts(self, came: list[int], p: float) -> Callable[[random.Random, int], list[int]]:
        """Running totals of bad events (prefix sums, a leading 0) over the first ``evals`` intervals."""
        tables = {m: self.binomial.table(m, p) for m in set(came)}

        def run(rng: random.Random, evals: int) -> list[int]:
            rnd = rng.random
            drawn = [low + bisect_left(cdf, rnd()) for low, cdf in [tables[m] for m in came[:evals]]]
            return list(accumulate(drawn, initial=0))

        return run

    def _rate(self, spec: MetricGate, value: float) -> _Track:
        bad = min(max((1.0 - value) if spec.higher else value, 0.0), 1.0)
        came = self._arrivals(_shares(self.step.percent)[0])
        spans = self._covered(spec)
        samples = _in_windows(came, spans)
        confidence, minimum = self.gates.metric_confidence(spec), self.min_samples(spec)
        edges = self.edges
        for n in set(samples):
            if (spec.metric, n) in edges:
                continue

            # the judge at every count k of bad events in n: fail from kf on, pass up to kp (monotone)
            def verdict_at(k: float, n: int = n) -> str:
                k = round(k)
                shown = None if n == 0 else ((n - k) / n if spec.higher else k / n)
                return judge(
                    spec,
                    shown,
                    n,
                    minimum,
                    self.window(spec),
                    confidence,
                    self.gates.test,
                    pass_when=self.gates.pass_when,
                ).verdict

            edges[(spec.metric, n)] = _count_edges(verdict_at, n)
        fail_at = [edges[(spec.metric, n)][0] for n in samples]
        pass_to = [edges[(spec.metric, n)][1] for n in samples]
        counts = self._counts(came, bad)

        def run(rng: random.Random, evals: int) -> tuple[list[int], list[int] | None]:
            k = counts(rng, evals)
            window = [k[j + 1] - k[j + 1 - spans[j]] for j in range(evals)]
            codes = [2 if w >= f else 0 if w <= p else 1 for w, f, p in zip(window, fail_at, pass_to, strict=False)]
            return codes, k[1:]

        return _Track(spec, run, "binomial counts per interval")

    def _compare_rate(self, spec: MetricGate, difference: float) -> _Track:
        control = self.assumptions.control_rate.get(spec.metric, DEFAULT_CONTROL_RATE)
        rates = (min(max(control + difference, 0.0), 1.0), control)
        came = [self._arrivals(s) for s in _shares(self.step.percent)]
        spans = self._covered(spec)
        sizes = [_in_windows(cohort, spans) for cohort in came]
        confidence, minimum, pass_when = self.judged_with(spec)
        counters = [self._counts(c, p) for c, p in zip(came, rates, strict=True)]
        memo: dict[tuple[int, int, int, int], int] = {}
        window = self.window(spec)

        def verdict(kt: int, nt: int, kc: int, nc: int) -> int:
            key = (kt, nt, kc, nc)
            code = memo.get(key)
            if code is None:
                treatment = Cohort(kt / nt if nt else None, nt)
                found = judge_difference(
                    spec.metric,
                    spec.target,
                    spec.alert,
                    treatment,
                    Cohort(kc / nc if nc else None, nc),
                    minimum,
                    window,
                    confidence,
                    pass_when,
                    "rate",
                )[0]
                code = memo[key] = _CODE[found]
            return code

        def run(rng: random.Random, evals: int) -> tuple[list[int], list[int] | None]:
            kt, kc = (counter(rng, evals) for counter in counters)
            codes = [
                verdict(kt[j + 1] - kt[j + 1 - c], sizes[0][j], kc[j + 1] - kc[j + 1 - c], sizes[1][j])
                for j, c in enumerate(spans[:evals])
            ]
            return codes, kt[1:]

        return _Track(spec, run, "binomial counts per cohort per interval")

    # --- latencies -----------------------------------------------------------------------------------
    def model(self, spec: MetricGate) -> LatencyModel:
        return self.assumptions.latency.get(spec.metric) or assumed_latency(spec)

    def _sums(self, model: LatencyModel, shift: float, came: list[int], per_call: bool) -> Callable[..., Any]:
        """Running (count, sum, sum of squares) of one cohort's latencies: drawn call by call, or each
        interval's sum as a normal (the central limit theorem) with the model's spread."""
        mean, sd = model.mean + shift, model.sd
        second = sd * sd + mean * mean

        def run(rng: random.Random, evals: int) -> tuple[list[float], list[float]]:
            sums, squares = [0.0], [0.0]
            for m in came[:evals]:
                if per_call:
                    values = [model.draw(rng) + shift for _ in range(m)]
                    s, q = sum(values), sum(v * v for v in values)
                else:
                    s, q = (rng.gauss(m * mean, math.sqrt(m) * sd) if m else 0.0), m * second
                sums.append(sums[-1] + s)
                squares.append(squares[-1] + q)
            return sums, squares

        return run

    @staticmethod
    def _figures(n: int, total: float, squares: float) -> tuple[float | None, float | None]:
        if n == 0:
            return None, None
        mean = total / n
        return mean, math.sqrt(max(squares / n - mean * mean, 0.0))

    def _mean(self, spec: MetricGate, value: float) -> _Track:
        model = self.model(spec)
        shift = value - model.mean  # the breach moves every call by the same amount; the spread stays
        came = self._arrivals(_shares(self.step.percent)[0])
        per_call = sum(came) <= PER_CALL_LIMIT or spec.higher
        sums = self._sums(model, shift, came, per_call)
        spans = self._covered(spec)
        samples = _in_windows(came, spans)
        # a provider's latency has no spread to go on: judged on its value (as judge() does)
        with_sd = spec.provider == EMBEDDED
        confidence, minimum = self.gates.metric_confidence(spec), self.min_samples(spec)
        window = self.window(spec)

        def verdict(mean: float | None, n: int, sd: float | None) -> str:
            return judge(
                spec,
                mean,
                n,
                minimum,
                window,
                confidence,
                self.gates.test,
                sd=sd if with_sd else None,
                pass_when=self.gates.pass_when,
            ).verdict

        edges, spread = self.edges, model.sd
        if not per_call:
            scale = max(spread, abs(spec.alert), abs(spec.target), 1.0)
            for n in set(samples):
                if n and (spec.metric, n) not in edges:

                    def at(v: float, n: int = n) -> str:
                        return verdict(v, n, spread)

                    edges[(spec.metric, n)] = _value_edges(at, spec.target, spec.alert, scale)

        def run(rng: random.Random, evals: int) -> tuple[list[int], list[int] | None]:
            if not per_call:
                means = _normal_means(rng, model.mean + shift, spread, came, spans, samples, evals)
                name = spec.metric
                return [
                    1 if mean is None else 2 if mean > edges[(name, n)][0] else 0 if mean < edges[(name, n)][1] else 1
                    for mean, n in zip(means, samples, strict=False)
                ], None
            s, q = sums(rng, evals)
            codes = []
            for j in range(evals):
                n, c = samples[j], spans[j]
                mean, sd = self._figures(n, s[j + 1] - s[j + 1 - c], q[j + 1] - q[j + 1 - c])
                codes.append(_CODE[verdict(mean, n, sd)])
            return codes, None

        return _Track(spec, run, "calls drawn one by one" if per_call else "window means drawn as normals")

    def _compare_mean(self, spec: MetricGate, difference: float) -> _Track:
        model = self.model(spec)
        came = [self._arrivals(s) for s in _shares(self.step.percent)]
        per_call = sum(map(sum, came)) <= 2 * PER_CALL_LIMIT
        draws = [self._sums(model, shift, c, per_call) for shift, c in zip((difference, 0.0), came, strict=True)]
        spans = self._covered(spec)
        sizes = [_in_windows(cohort, spans) for cohort in came]
        confidence, minimum, pass_when = self.judged_with(spec)
        window, base = self.window(spec), model.mean

        def verdict(treatment: Cohort, control: Cohort) -> str:
            return judge_difference(
                spec.metric,
                spec.target,
                spec.alert,
                treatment,
                control,
                minimum,
                window,
                confidence,
                pass_when,
                "latency",
            )[0]

        edges, sd = self.edges, model.sd
        if not per_call:
            scale = max(sd, abs(spec.alert), 1.0)
            for nt, nc in set(zip(*sizes, strict=True)):
                if nt and nc and (spec.metric, nt, nc) not in edges:

                    def at(d: float, nt: int = nt, nc: int = nc) -> str:
                        return verdict(Cohort(base + d, nt, sd), Cohort(base, nc, sd))

                    edges[(spec.metric, nt, nc)] = _value_edges(at, spec.target, spec.alert, scale)

        def run(rng: random.Random, evals: int) -> tuple[list[int], list[int] | None]:
            if not per_call:
                treated = _normal_means(rng, base + difference, sd, came[0], spans, sizes[0], evals)
                control = _normal_means(rng, base, sd, came[1], spans, sizes[1], evals)
                codes = []
                for mt, mc, nt, nc in zip(treated, control, sizes[0], sizes[1], strict=False):
                    edge = edges.get((spec.metric, nt, nc))
                    if mt is None or mc is None or edge is None:
                        codes.append(1)
                    else:
                        d = mt - mc
                        codes.append(2 if d > edge[0] else 0 if d < edge[1] else 1)
                return codes, None
            (st, qt), (sc, qc) = (draw(rng, evals) for draw in draws)
            codes = []
            for j in range(evals):
                c, nt, nc = spans[j], sizes[0][j], sizes[1][j]
                mt, sdt = self._figures(nt, st[j + 1] - st[j + 1 - c], qt[j + 1] - qt[j + 1 - c])
                mc, sdc = self._figures(nc, sc[j + 1] - sc[j + 1 - c], qc[j + 1] - qc[j + 1 - c])
                codes.append(_CODE[verdict(Cohort(mt, nt, sdt), Cohort(mc, nc, sdc))])
            return codes, None

        return _Track(spec, run, "calls drawn one by one" if per_call else "window means drawn as normals")

    def _rank(self, spec: MetricGate, difference: float) -> _Track:
        """The rank judge fails only at its looks (each cohort at ``min_samples * 2**k``), where the
        Mann-Whitney p-value must fall below its share of the error; a failed look keeps failing. So
        only the looks are computed, with the judge's own test."""
        model = self.model(spec)
        came = [self._arrivals(s) for s in _shares(self.step.percent)]
        spans = self._covered(spec)
        confidence, minimum = self.gates.metric_confidence(spec), self.min_samples(spec)
        alpha = (1.0 - confidence) / MAX_LOOKS

        def run(rng: random.Random, evals: int) -> tuple[list[int], list[int] | None]:
            chunks: list[list[list[float]]] = [[], []]
            codes, looks, failed = [], 0, False
            for j in range(evals):
                for cohort, shift, arrived in zip(chunks, (difference, 0.0), came, strict=True):
                    cohort.append([model.draw(rng) + shift for _ in range(arrived[j])])
                if failed:
                    codes.append(2)
                    continue
                c = spans[j]
                treatment = [v for chunk in chunks[0][-c:] for v in chunk][-RANK_SAMPLE_CAP:]
                control = [v for chunk in chunks[1][-c:] for v in chunk][-RANK_SAMPLE_CAP:]
                n = min(len(treatment), len(control))
                if n >= max(minimum, 1) and looks < MAX_LOOKS and n >= minimum * 2**looks:
                    looks += 1
                    p = mann_whitney_greater(treatment, control, spec.alert)
                    shift = statistics.median(treatment) - statistics.median(control)
                    failed = (confidence <= 0 and shift > spec.alert) or (confidence > 0 and p < alpha)
                codes.append(2 if failed else 1)
            return codes, None

        return _Track(spec, run, "calls drawn one by one")

    # --- one seeded step, many times -----------------------------------------------------------------
    def run(self, tracks: list[_Track], reps: int, rng: random.Random) -> list[tuple[str, float, int]]:
        """(how each step ended: fail / stop / pass / hold, when, the first track's bad events then).
        The tracks are independent; each is drawn only as far as the step can still go."""
        step, times = self.step, self.evaluations
        first_pass = next((j for j, t in enumerate(times) if t >= step.hold - 1e-9), len(times) - 1)
        ends = []
        for _ in range(reps):
            horizon = len(times)
            fail_at, stop_at = horizon, horizon
            passing: list[list[bool]] = []
            bad: list[int] | None = None
            for track in tracks:
                codes, counted = track.run(rng, horizon)
                if bad is None:
                    bad = counted or []
                spec = track.spec
                if spec.initial_delay > 0:
                    codes = [1 if t < spec.initial_delay else c for t, c in zip(times, codes, strict=False)]
                failed = _nth_fail(codes, spec.failure_limit)
                if failed is not None:
                    if spec.role == "signal":
                        stop_at = min(stop_at, failed)
                    else:
                        fail_at = min(fail_at, failed)
                    horizon = min(horizon, failed + 1)
                    codes = codes[:failed]
                ok = [c == 0 for c in codes]
                passing.append(ok)
            end_pass = next(
                (j for j in range(first_pass, horizon) if all(j < len(ok) and ok[j] for ok in passing)), None
            )
            candidates = [(fail_at, 0, "fail"), (stop_at, 1, "stop")]
            if end_pass is not None:
                candidates.append((end_pass, 2, "pass"))
            j, _, how = min(candidates)
            if j >= len(times):
                j, how = len(times) - 1, "hold"
            ends.append((how, times[j], bad[j] if bad and j < len(bad) else 0))
        return ends


def _in_windows(came: list[int], spans: list[int]) -> list[int]:
    """The samples in each evaluation's window: the newest ``spans[j]`` intervals' arrivals."""
    totals = list(accumulate(came, initial=0))
    return [totals[j + 1] - totals[j + 1 - c] for j, c in enumerate(spans)]


def _nth_fail(codes: list[int], limit: int) -> int | None:
    """Where the ``limit``-th fail is (a metric fails at its ``failure_limit``-th failing evaluation)."""
    at = -1
    for _ in range(limit):
        try:
            at = codes.index(2, at + 1)
        except ValueError:
            return None
    return at


def _standard_normals(rng: random.Random, count: int) -> list[float]:
    """``count`` standard normal draws, two at a time (Box-Muller: a third of ``random.gauss``'s cost)."""
    rnd, log, root, cos, sin, tau = rng.random, math.log, math.sqrt, math.cos, math.sin, math.tau
    out: list[float] = []
    for _ in range((count + 1) // 2):
        radius, angle = root(-2.0 * log(1.0 - rnd())), tau * rnd()
        out += (radius * cos(angle), radius * sin(angle))
    return out


def _normal_means(
    rng: random.Random, mean: float, sd: float, came: list[int], spans: list[int], samples: list[int], evals: int
) -> list[float | None]:
    """Each window's mean when each interval's sum of ``m`` calls is drawn as a normal (mean ``m *
    mean``, spread ``sqrt(m) * sd``): many calls, by the central limit theorem."""
    root = math.sqrt
    normals = _standard_normals(rng, evals)
    sums = list(
        accumulate([m * mean + root(m) * sd * z for m, z in zip(came[:evals], normals, strict=False)], initial=0.0)
    )
    return [
        (sums[j + 1] - sums[j + 1 - c]) / n if n else None
        for j, (c, n) in enumerate(zip(spans[:evals], samples, strict=False))
    ]


def _count_edges(verdict_at: Callable[[float], str], n: int) -> tuple[float, float]:
    """(the fewest bad events in ``n`` that fail, the most that pass): the judge's verdict worsens as
    bad events grow, so each edge is one bisection over 0..n (n + 1 / -1: never)."""
    if verdict_at(n) == FAIL:
        low, high = -1, n  # verdict at low is not FAIL, at high is FAIL
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if verdict_at(middle) == FAIL else (middle, high)
        fail_from: float = high
    else:
        fail_from = n + 1
    if verdict_at(0) == PASS:
        low, high = 0, n + 1  # verdict at low is PASS, at high is not
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if middle <= n and verdict_at(middle) == PASS else (low, middle)
        pass_to: float = low
    else:
        pass_to = -1
    return fail_from, pass_to


#: a compare rate's control rate when nobody says (the booking flow's own error rate, roughly)
DEFAULT_CONTROL_RATE = 0.01


def assumed_latency(spec: MetricGate) -> LatencyModel:
    """The spread assumed for a latency metric nobody described: a lognormal whose standard
    deviation equals its mean (for a compare metric: a mean and a spread the size of the alert)."""
    scale = abs(spec.alert) if spec.kind == "compare" else max(abs(spec.target), 1.0)
    return LatencyModel.from_moments(max(scale, 1.0), max(scale, 1.0))


def twice_the_alert(spec: MetricGate) -> float | None:
    """A breach of twice the alert, in the metric's own terms: an error rate of 2 x 5 % = 10 %; a
    success rate whose failures are twice the alert's (90 % -> 80 %); a mean of 2 x 5 s; a difference
    of 2 x the alert margin. None when that is no breach (an alert at or below 0 for a difference)."""
    if spec.kind == "compare":
        return 2 * spec.alert if spec.alert > 0 else None
    if spec.unit == "rate" and spec.higher:
        return max(0.0, 1.0 - 2 * (1.0 - spec.alert))
    if spec.unit == "rate":
        return min(1.0, 2 * spec.alert)
    return 2 * spec.alert if spec.alert > 0 else None


def _quantile(times: list[float], q: float, reps: int) -> float | None:
    """The time by which a share ``q`` of all ``reps`` steps had failed (None: fewer did)."""
    needed = math.ceil(q * reps - 1e-9)
    if needed <= 0 or len(times) < needed:
        return None
    return sorted(times)[needed - 1]


def samples_in_window(rate: float, t: float, window: float, interval: float) -> int:
    """Samples in the window at evaluation time ``t`` when ``rate`` per second arrive evenly."""
    j = round(t / interval)
    c = covered(t, window, interval) if t > 0 else 0
    return math.floor(rate * interval * j + 1e-9) - math.floor(rate * interval * (j - c) + 1e-9)


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
            share_t, share_c = _shares(percent)
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
        shares = _shares(percent)
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


def _catch(sim: _Sim, tracks: list[_Track], reps: int, rng: random.Random) -> dict[str, Any]:
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


def _reps_for(tracks: list[_Track], sim: _Sim, reps: int) -> int:
    """Fewer steps when latencies are drawn call by call, so a figure costs a bounded time."""
    calls = 0
    for track in tracks:
        if track.method == "calls drawn one by one":
            shares = _shares(sim.step.percent)
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
    settings = _Step(percent, step.hold, interval, step.max_hold)
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
    sim = _Sim(gates, settings, traffic, assumptions)
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
    sim = _Sim(gates, _Step(percent, step.hold, interval, step.max_hold), traffic, assumptions or Assumptions())
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


def parse_traffic(text: str) -> float:
    """Events per second from ``50/s``, ``3000/m``, ``120000/h``, ``50``; a ValueError otherwise."""
    value = text.strip().lower().replace(" ", "")
    scale = 1.0
    for suffix, size in (("/s", 1.0), ("/sec", 1.0), ("/m", 60.0), ("/min", 60.0), ("/h", 3600.0)):
        if value.endswith(suffix):
            value, scale = value[: -len(suffix)], size
            break
    try:
        rate = float(value) / scale
    except ValueError:
        raise ValueError(f"expected a rate like 50/s, 3000/m or 120000/h, got {text!r}") from None
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"the traffic must be a positive rate, got {text!r}")
    return rate
