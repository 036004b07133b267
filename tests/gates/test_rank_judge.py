"""The rank judge for latency (Mann-Whitney with a Hodges-Lehmann shift, its error spent over fixed
looks): the statistics on known cases, its verdicts on constructed cohorts, and end to end with the
real service and sandbox, where WhatsApp slowed for its customers only fails it."""

from __future__ import annotations

import random
import time

import pytest

from rollout.checks.client import ServiceClient
from rollout.gates import FAIL, HOLD, PASS, Reading, StepCounts, judge_readings
from rollout.gates.rank import MAX_LOOKS, judge_rank
from rollout.playbook.model import GateSet, MetricGate
from rollout.stats import hodges_lehmann, mann_whitney_greater
from rollout.targets.embedded.provider import EmbeddedProvider
from rollout.util.clock import SystemClock
from rollout.util.yamlfile import FieldProblems

#: starts real servers (or kills real processes): outside the fast loop
pytestmark = pytest.mark.slow

DELAY = MetricGate(metric="confirmation_delay_ms", kind="compare", target=200, alert=500, judge="rank")


def lognormal(n: int, median: float, rng: random.Random, shift: float = 0.0) -> list[float]:
    return [median * rng.lognormvariate(0, 0.6) + shift for _ in range(n)]


def test_mann_whitney_and_hodges_lehmann_on_known_cases():
    # U = 16 of 16: z = (16 - 8 - 0.5) / sqrt(12), p = 1 - Phi(2.165)
    assert mann_whitney_greater([5, 6, 7, 8], [1, 2, 3, 4]) == pytest.approx(0.01519, abs=1e-4)
    assert mann_whitney_greater([1, 2, 3, 4], [5, 6, 7, 8]) > 0.99
    assert mann_whitney_greater([1, 2, 3, 4], [5, 6, 7, 8], shift=-10) < 0.05  # 10 added to y's rival
    assert hodges_lehmann([5, 6, 7, 8], [1, 2, 3, 4]) == 4.0
    # one wild outlier moves the shift estimate not at all, the mean difference by 250
    rng = random.Random(3)
    x, y = lognormal(200, 100, rng), lognormal(200, 100, rng)
    assert abs(hodges_lehmann([*x[:-1], 50_000.0], y) - hodges_lehmann(x, y)) < 2


def test_a_slower_treatment_fails_at_a_look_and_an_equal_one_passes():
    rng = random.Random(7)
    slow = Reading(
        None, 100, 60.0, percent=50, cohort_samples=(lognormal(100, 300, rng, 900), lognormal(100, 300, rng))
    )
    result = judge_rank(DELAY, slow, 20, 0.99)
    assert result.verdict == FAIL and result.looks == 1 and result.value > 500
    assert "Mann-Whitney p = " in result.reason and f"look 1 of {MAX_LOOKS}" in result.reason
    same = Reading(None, 100, 60.0, percent=50, cohort_samples=(lognormal(100, 300, rng), lognormal(100, 300, rng)))
    assert judge_rank(DELAY, same, 20, 0.99).verdict == PASS


def test_between_looks_nothing_fails_and_a_failed_look_keeps_failing():
    rng = random.Random(11)
    slow = Reading(None, 30, 60.0, percent=50, cohort_samples=(lognormal(30, 300, rng, 900), lognormal(30, 300, rng)))
    # one look spent at 20 samples: the next is due at 40; with 30 nothing is tested, so no fail
    between = judge_rank(DELAY, slow, 20, 0.99, looks_spent=1)
    assert between.verdict == HOLD and between.looks == 1 and "1 of 5 looks spent" in between.reason
    assert judge_rank(DELAY, slow, 20, 0.99, looks_spent=1, failed_before=True).verdict == FAIL
    # all looks spent: the test is never run again
    assert judge_rank(DELAY, slow, 1, 0.99, looks_spent=MAX_LOOKS).looks == MAX_LOOKS


def test_non_finite_samples_are_dropped_and_outliers_said():
    rng = random.Random(5)
    treatment = [*lognormal(60, 300, rng), float("nan"), float("inf"), 90_000.0]
    reading = Reading(None, 60, 60.0, percent=50, cohort_samples=(treatment, lognormal(60, 300, rng)))
    result = judge_rank(DELAY, reading, 20, 0.99)
    assert "2 non-finite samples dropped" in result.reason
    assert "outliers beyond Q3 + 3 IQR kept" in result.reason and result.verdict == PASS


def test_looks_are_counted_across_evaluations_and_no_data_is_a_hold():
    gates = GateSet(window=60, min_samples=20, metrics=[DELAY])
    counts, rng = StepCounts(), random.Random(2)
    for n, looks in ((20, 1), (30, 1), (40, 2), (80, 3)):
        reading = Reading(None, n, 60.0, percent=50, cohort_samples=(lognormal(n, 300, rng), lognormal(n, 300, rng)))
        verdict = judge_readings(gates, [reading], counts=counts)
        assert verdict.metrics[0].looks == looks
    restored = StepCounts([verdict.metrics[0].as_dict()])  # a resumed step goes on from the record
    assert restored.looks["confirmation_delay_ms"] == 3
    empty = Reading(None, 0, 60.0, percent=50, cohort_samples=([], []))
    assert judge_readings(gates, [empty]).verdict == HOLD


@pytest.mark.parametrize(
    "fields",
    [
        {"metric": "booking_error_rate", "kind": "compare", "target": 0.005, "alert": 0.02, "judge": "rank"},
        {"metric": "success_rate", "target": 0.95, "alert": 0.9, "judge": "rank"},
    ],
)
def test_the_rank_judge_is_refused_where_it_cannot_judge(fields):
    with pytest.raises((FieldProblems, ValueError), match="rank judges"):
        MetricGate(**fields)


def test_whatsapp_slowed_for_its_customers_only_fails_the_rank_judge(make_service, sandbox):
    service = make_service(clock=SystemClock(), WHATSAPP_ROLLOUT_PERCENT=50)
    sandbox.faults(latency_ms=900)
    ids = [service.book(n, customer=f"customer-{n}")["id"] for n in range(1, 61)]
    for booking_id in ids:
        service.wait_status(booking_id, "sent", "skipped", timeout=20)
    gates = GateSet(
        window=300,
        min_samples=10,
        metrics=[DELAY, MetricGate(metric="booking_latency_ms", kind="compare", target=50, alert=250, judge="rank")],
    )
    client = ServiceClient(service.url)
    try:
        provider = EmbeddedProvider(client)
        readings = [provider.measure(spec, 300, 0, 50) for spec in gates.metrics]
    finally:
        client.close()
    delay, booking = judge_readings(gates, readings).metrics
    assert delay.verdict == FAIL and delay.value > 500, delay.reason
    assert booking.verdict == PASS, booking.reason  # the booking request never waits for WhatsApp


def test_the_rank_judge_reads_per_cohort_series_from_a_real_prometheus(make_service, sandbox, tmp_path):
    """The service's per-cohort confirmation-delay histogram, scraped every second; each point of the
    cohort's mean delay over the window is one sample."""
    from rollout.providers.prometheus import PrometheusMetrics
    from tests.support.harness import wait_until
    from tests.support.prometheus import Prometheus

    service = make_service(clock=SystemClock(), WHATSAPP_ROLLOUT_PERCENT=50)
    sandbox.faults(latency_ms=600)
    prom = Prometheus(tmp_path / "prom", [service.url.removeprefix("http://")])
    metrics = PrometheusMetrics(prom.url, None, 5.0, "prom")
    try:
        spec = MetricGate(
            metric="whatsapp_delay_ms",
            provider="prom",
            kind="compare",
            judge="rank",
            step=1,
            target=100,
            alert=300,
            query='1000 * sum(rate(rollout_confirmation_delay_seconds_sum{cohort="$cohort"}[3s])) '
            '/ sum(rate(rollout_confirmation_delay_seconds_count{cohort="$cohort"}[3s]))',
        )
        gates = GateSet(window=20, min_samples=8, metrics=[spec])
        counts = StepCounts()  # kept across evaluations, as the engine keeps a step's: each one is a look
        n = 0

        def judged() -> object:
            nonlocal n
            for _ in range(6):  # customers keep booking while Prometheus scrapes (about 20/s: a backlog
                n += 1  # would delay both cohorts alike and hide the treatment's slowdown in the trend)
                service.book(n, customer=f"customer-{n}")
            time.sleep(0.3)
            reading = metrics.measure(spec, 20, time.time(), 50)
            verdict = judge_readings(gates, [reading], counts=counts).metrics[0]
            return verdict if verdict.verdict == FAIL else None

        result = wait_until(judged, timeout=40, what="the rank judge to see the slower treatment")
        assert result.value > 300 and "Mann-Whitney" in result.reason, result.reason
    finally:
        metrics.close()
        prom.close()


def test_a_provider_rank_metric_needs_its_cohort_query():
    with pytest.raises(ValueError, match="needs a PromQL query with \\$cohort"):
        MetricGate(metric="delay", provider="p", kind="compare", judge="rank", target=1, alert=2, query="x")
    assert (
        MetricGate(
            metric="delay", provider="p", kind="compare", judge="rank", target=100, alert=300, query="$cohort"
        ).unit
        == "latency"
    )
