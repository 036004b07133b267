"""One ramp step simulated many times, seeded, through the gate's own judges: what a provider would
read at each evaluation (counts, sums and sums of squares, rank samples) and the judge's verdict on it."""

from __future__ import annotations

import math
import random
import statistics
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from rollout.gates.compare import judge_difference
from rollout.gates.forecast.model import (
    DEFAULT_CONTROL_RATE,
    Assumptions,
    LatencyModel,
    arrivals,
    assumed_latency,
    covered,
)
from rollout.gates.judge import judge
from rollout.gates.rank import MAX_LOOKS
from rollout.gates.results import FAIL, HOLD, PASS
from rollout.playbook.builtin import EMBEDDED
from rollout.playbook.model import GateSet, MetricGate
from rollout.stats import Cohort, mann_whitney_greater

#: at most this many simulated samples per figure when latencies are drawn call by call
SAMPLE_BUDGET = 3_000_000

#: a cohort whose step sees more calls than this is drawn as window means (normal), not call by call
PER_CALL_LIMIT = 2_000

#: the embedded service hands the rank judge the newest 1,000 samples per cohort
RANK_SAMPLE_CAP = 1000

#: a verdict as a small number, worst last
_CODE = {PASS: 0, HOLD: 1, FAIL: 2}


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


@dataclass
class Track:
    """One deciding metric in a simulated step: ``run(rng, evals)`` draws what a provider would read
    at each of the first ``evals`` evaluations and returns the judge's verdicts (0 pass, 1 hold, 2
    fail) and, for a rate, the bad events so far at each evaluation."""

    spec: MetricGate
    run: Callable[[random.Random, int], tuple[list[int], list[int] | None]]
    method: str


@dataclass(frozen=True)
class StepSettings:
    """A ramp step's settings as the simulation needs them."""

    percent: int
    hold: float
    interval: float
    max_hold: float

    @property
    def chunks(self) -> int:
        return max(1, math.ceil((self.hold + self.max_hold) / self.interval - 1e-9))


def shares_of(percent: int) -> tuple[float, float]:
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
    if spec.percentile is not None:
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


class Simulation:
    """Builds the tracks of one step's metrics and runs seeded steps through them."""

    def __init__(self, gates: GateSet, step: StepSettings, traffic: float, assumptions: Assumptions) -> None:
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

    def track(self, spec: MetricGate, truth: float | None) -> Track:
        """The track of ``spec`` at the true value ``truth`` (None: at its target)."""
        value = spec.target if truth is None else truth
        if spec.per_sample:
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

    def _rate(self, spec: MetricGate, value: float) -> Track:
        bad = min(max((1.0 - value) if spec.higher else value, 0.0), 1.0)
        came = self._arrivals(shares_of(self.step.percent)[0])
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

        return Track(spec, run, "binomial counts per interval")

    def _compare_rate(self, spec: MetricGate, difference: float) -> Track:
        control = self.assumptions.control_rate.get(spec.metric, DEFAULT_CONTROL_RATE)
        rates = (min(max(control + difference, 0.0), 1.0), control)
        came = [self._arrivals(s) for s in shares_of(self.step.percent)]
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

        return Track(spec, run, "binomial counts per cohort per interval")

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

    def _mean(self, spec: MetricGate, value: float) -> Track:
        model = self.model(spec)
        shift = value - model.mean  # the breach moves every call by the same amount; the spread stays
        came = self._arrivals(shares_of(self.step.percent)[0])
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

        return Track(spec, run, "calls drawn one by one" if per_call else "window means drawn as normals")

    def _compare_mean(self, spec: MetricGate, difference: float) -> Track:
        model = self.model(spec)
        came = [self._arrivals(s) for s in shares_of(self.step.percent)]
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

        return Track(spec, run, "calls drawn one by one" if per_call else "window means drawn as normals")

    def _rank(self, spec: MetricGate, difference: float) -> Track:
        """The rank judge fails only at its looks (each cohort at ``min_samples * 2**k``), where the
        Mann-Whitney p-value must fall below its share of the error; a failed look keeps failing. So
        only the looks are computed, with the judge's own test."""
        model = self.model(spec)
        came = [self._arrivals(s) for s in shares_of(self.step.percent)]
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

        return Track(spec, run, "calls drawn one by one")

    # --- one seeded step, many times -----------------------------------------------------------------
    def run(self, tracks: list[Track], reps: int, rng: random.Random) -> list[tuple[str, float, int]]:
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
