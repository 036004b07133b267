"""The statistics the gates judge with, as pure functions: no I/O, nothing of the engine.

* :func:`confidence_sequence`: the always-valid interval of a proportion (Robbins' beta-binomial
  mixture), valid at every look at once; :func:`wilson`, the fixed-sample interval it replaced.
* :func:`mean_margin`: the normal-mixture confidence sequence of a mean (the asymptotic confidence
  sequence of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, 2021).
* :func:`difference_interval`: treatment minus control, one interval per cohort at half the budget.
* :func:`chi_square_p`: the sample-ratio check's goodness of fit (one degree of freedom).
* :func:`mann_whitney_greater` and :func:`hodges_lehmann`: the rank test of one sample against
  another (is it stochastically larger, by more than a shift?) and its shift estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

#: where a normal-mixture boundary is tightest (in samples per cohort): a few hundred bookings
MIXTURE_TIGHTEST_AT = 200.0


@dataclass(frozen=True)
class Cohort:
    """One cohort's figures for one metric: its value (a rate or a mean), its sample count, and for
    a mean the standard deviation."""

    value: float | None
    samples: int
    sd: float | None = None


def wilson(rate: float, samples: int, confidence: float) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``rate`` observed over ``samples``."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    n = float(samples)
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    margin = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - margin), min(1.0, centre + margin)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def mixture_log_evidence(successes: int, n: int, theta: float) -> float:
    """log M_n(theta): the beta-binomial mixture martingale (uniform prior) against the proportion
    ``theta`` after ``successes`` in ``n``. Under a true proportion theta it is a nonnegative
    martingale with mean 1, so by Ville's inequality it ever reaches 1/delta with probability at
    most delta, however often it is looked at (Robbins' confidence sequence)."""
    if theta <= 0.0:
        return math.inf if successes > 0 else _log_beta(1, 1 + n)
    if theta >= 1.0:
        return math.inf if successes < n else _log_beta(1 + n, 1)
    return (
        _log_beta(1 + successes, 1 + n - successes) - successes * math.log(theta) - (n - successes) * math.log1p(-theta)
    )


@lru_cache(maxsize=65536)
def confidence_sequence(rate: float, samples: int, confidence: float) -> tuple[float, float]:
    """The always-valid interval of a proportion: every theta whose mixture evidence stays below
    1 / (1 - confidence). Valid at every look at once, unlike a fixed-sample (Wilson) interval.
    Remembered (a forecast asks for the same counts again and again)."""
    n = int(samples)
    successes = min(n, max(0, round(rate * n)))
    bound = math.log(1.0 / (1.0 - confidence))
    mle = successes / n

    def outside(theta: float) -> bool:
        return mixture_log_evidence(successes, n, theta) >= bound

    def edge(inside: float, out: float) -> float:
        for _ in range(60):  # bisection: the evidence falls towards the MLE and rises away from it
            mid = (inside + out) / 2
            inside, out = (inside, mid) if outside(mid) else (mid, out)
        return inside

    low = 0.0 if not outside(0.0) else edge(mle, 0.0)
    high = 1.0 if not outside(1.0) else edge(mle, 1.0)
    return low, high


def mean_margin(samples: int, sd: float, alpha: float, tightest_at: float = MIXTURE_TIGHTEST_AT) -> float:
    """Half-width of the (1 - alpha) normal-mixture confidence sequence for a mean after ``samples``
    observations of standard deviation ``sd``: valid at every ``samples`` at once."""
    log_alpha = math.log(alpha)
    rho2 = (-2 * log_alpha + math.log(-2 * log_alpha + 1)) / tightest_at
    n = float(samples)
    return sd * math.sqrt(2 * (n * rho2 + 1) * math.log(math.sqrt(n * rho2 + 1) / alpha) / (n * n * rho2))


def difference_interval(unit: str, treatment: Cohort, control: Cohort, confidence: float) -> tuple[float, float]:
    """The always-valid interval of ``treatment - control`` at ``confidence`` (0: the point value)."""
    if confidence <= 0:
        difference = (treatment.value or 0.0) - (control.value or 0.0)
        return difference, difference
    per_cohort = 1.0 - (1.0 - confidence) / 2  # a union bound over the two cohorts
    if unit == "rate":
        t_low, t_high = confidence_sequence(treatment.value or 0.0, treatment.samples, per_cohort)
        c_low, c_high = confidence_sequence(control.value or 0.0, control.samples, per_cohort)
        return t_low - c_high, t_high - c_low
    alpha = 1.0 - per_cohort
    spread = mean_margin(treatment.samples, treatment.sd or 0.0, alpha) + mean_margin(
        control.samples, control.sd or 0.0, alpha
    )
    difference = (treatment.value or 0.0) - (control.value or 0.0)
    return difference - spread, difference + spread


def chi_square_p(observed_in: int, total: int, share: float) -> float:
    """The p-value of ``observed_in`` of ``total`` landing in a group expected to get ``share`` of them
    (chi-square goodness of fit, one degree of freedom)."""
    expected_in = total * share
    expected_out = total - expected_in
    chi2 = (observed_in - expected_in) ** 2 / expected_in + (total - observed_in - expected_out) ** 2 / expected_out
    return math.erfc(math.sqrt(chi2 / 2.0))


def mann_whitney_greater(x: list[float], y: list[float], shift: float = 0.0) -> float:
    """One-sided p-value that ``x - shift`` is stochastically larger than ``y`` (Mann-Whitney U, the
    normal approximation with the tie correction and a continuity correction). Needs both non-empty."""
    nx, ny = len(x), len(y)
    pooled = sorted([(v - shift, 0) for v in x] + [(v, 1) for v in y])
    rank_x, ties, i, n = 0.0, 0.0, 0, nx + ny
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        average = (i + j) / 2 + 1  # ranks i+1 .. j+1 share their average
        rank_x += average * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        size = j - i + 1
        ties += size**3 - size
        i = j + 1
    u = rank_x - nx * (nx + 1) / 2
    variance = nx * ny / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return 1.0
    z = (u - nx * ny / 2 - 0.5) / math.sqrt(variance)
    return 1.0 - NormalDist().cdf(z)


def hodges_lehmann(x: list[float], y: list[float], cap: int = 300) -> float:
    """The Hodges-Lehmann shift of ``x`` over ``y``: the median of every difference ``x_i - y_j``
    (robust to outliers, the effect size that goes with the rank test). Beyond ``cap`` values a
    sample is thinned evenly, so the cost stays ``cap**2``."""

    def thin(values: list[float]) -> list[float]:
        if len(values) <= cap:
            return values
        ordered = sorted(values)
        return [ordered[int(k * len(ordered) / cap)] for k in range(cap)]

    xs, ys = thin(x), thin(y)
    differences = sorted(a - b for a in xs for b in ys)
    middle = len(differences) // 2
    return differences[middle] if len(differences) % 2 else (differences[middle - 1] + differences[middle]) / 2
