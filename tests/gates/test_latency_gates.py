"""Latency gates under continuous watching: a mean fails only when its always-valid interval lies above
the alert, a 95th percentile only when more than 5 % of calls are surely slower than the alert; the
service gives the evidence (standard deviation, calls slower than a threshold)."""

from __future__ import annotations

import math
import random

from rollout.checks.client import ServiceClient
from rollout.gates import FAIL, HOLD, PASS, judge
from rollout.playbook.model import MetricGate
from rollout.targets.embedded.provider import EmbeddedProvider, embedded_reading
from rollout.util.clock import SystemClock

MEAN = MetricGate(metric="avg_latency_ms", target=2000, alert=5000)
P95 = MetricGate(metric="p95_latency_ms", target=2000, alert=5000)


def test_a_mean_just_over_the_alert_with_a_wide_spread_holds_and_a_clear_one_fails():
    unclear = judge(MEAN, 5600, 20, 10, 300, 0.99, sd=3000)
    assert unclear.verdict == HOLD and "not yet clear" in unclear.reason
    assert unclear.interval[0] < 5000 < unclear.interval[1] and "always-valid interval" in unclear.reason
    clear = judge(MEAN, 5600, 2000, 10, 300, 0.99, sd=300)
    assert clear.verdict == FAIL and clear.interval[0] > 5000
    assert judge(MEAN, 5600, 20, 10, 300, 0.99).verdict == FAIL  # without a spread: the point value, as before
    assert judge(MEAN, 5600, 20, 10, 300, 0.99, test="wilson", sd=3000).verdict == FAIL


def test_a_percentile_fails_only_when_more_than_5_percent_of_calls_are_surely_slower():
    few = judge(P95, 6000, 100, 10, 300, 0.99, above=8)
    assert few.verdict == HOLD and "of calls slower than 5000 ms" in few.reason
    many = judge(P95, 9000, 100, 10, 300, 0.99, above=60)
    assert (
        many.verdict == FAIL and "always-valid interval" in many.reason and "calls slower than 5000 ms" in many.reason
    )


def test_a_mean_sitting_at_the_alert_is_almost_never_failed_however_often_it_is_judged():
    # 300 streams of skewed latencies whose true mean is exactly the alert, judged every 5 calls up to 1,500
    rng = random.Random(5)
    sigma = 1.0
    scale = 5000 / (2.718281828459045 ** (sigma * sigma / 2))  # lognormal mean = scale * e^(sigma^2 / 2)
    fails = 0
    for _ in range(300):
        total = square = 0.0
        for n in range(1, 1501):
            x = scale * rng.lognormvariate(0.0, sigma)
            total, square = total + x, square + x * x
            if n % 5 == 0 and n >= 10:
                mean = total / n
                sd = math.sqrt(max(0.0, square / n - mean * mean) * n / (n - 1))
                if judge(MEAN, mean, n, 10, 300, 0.99, sd=sd).verdict == FAIL:
                    fails += 1
                    break
    assert fails / 300 <= 0.02, fails


def test_the_service_reports_the_spread_and_the_calls_slower_than_an_alert(make_service, sandbox):
    service = make_service(clock=SystemClock())
    sandbox.faults(latency_ms=60)
    for n in range(1, 11):
        service.wait_status(service.book(n)["id"], "sent")
    provider = EmbeddedProvider(ServiceClient(service.url))
    reading = provider.measure(MetricGate(metric="p95_latency_ms", target=20, alert=50), 300, 0, None)
    assert reading.samples == 10 and reading.above == 10  # every call took the sandbox's 60 ms or more
    mean = provider.measure(MEAN, 300, 0, None)
    assert mean.sd is not None and mean.sd >= 0 and mean.value >= 60
    # an answer for another threshold is not evidence for this one
    answer = service.http.get("/api/whatsapp/metrics", params={"window": 300, "above_ms": 10}).json()
    assert embedded_reading(P95, answer, 300).above is None


def test_pass_when_interval_needs_the_whole_interval_beyond_the_target():
    success = MetricGate(metric="success_rate", target=0.95, alert=0.90)
    early = judge(success, 1.0, 20, 10, 300, 0.99, pass_when="interval")
    assert early.verdict == HOLD and "> target 95.00% but not yet sure" in early.reason
    assert early.interval[0] < 0.95
    assert judge(success, 1.0, 20, 10, 300, 0.99).verdict == PASS  # the estimate, as shipped
    assert judge(success, 1.0, 400, 10, 300, 0.99, pass_when="interval").verdict == PASS
    mean = judge(MEAN, 1500, 30, 10, 300, 0.99, sd=1500, pass_when="interval")
    assert mean.verdict == HOLD and "not yet sure" in mean.reason
    assert judge(MEAN, 1500, 3000, 10, 300, 0.99, sd=300, pass_when="interval").verdict == PASS
