"""Treatment against control: the compare gate's always-valid bounds, its verdicts on constructed
cohorts, the playbook's rules for it, and end to end with the real service and sandbox: a slowdown of
WhatsApp customers only fails it, a slowdown for everyone does not."""

from __future__ import annotations

import math
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from rollout.gates import FAIL, HOLD, PASS, Reading, judge_compare
from rollout.gates.compare import judge_difference
from rollout.playbook.model import GateSet, MetricGate
from rollout.stats import Cohort, difference_interval, mean_margin
from rollout.targets.embedded.provider import evaluate
from rollout.util.clock import SystemClock
from rollout.util.yamlfile import FieldProblems
from tests.support.harness import wait_until


def test_the_mean_bound_holds_at_every_look_for_normal_data():
    # 400 streams looked at every 10 samples up to 2,000: the share whose true mean ever leaves the
    # interval stays within alpha (a fixed-sample 95 % interval looked at 200 times: most streams)
    rng = random.Random(7)
    alpha, escaped = 0.05, 0
    for _ in range(400):
        total = square = 0.0
        for n in range(1, 2001):
            x = rng.gauss(100.0, 20.0)
            total, square = total + x, square + x * x
            if n % 10 == 0 and n >= 30:
                mean = total / n
                sd = ((square / n - mean * mean) * n / (n - 1)) ** 0.5
                if abs(mean - 100.0) > mean_margin(n, sd, alpha):
                    escaped += 1
                    break
    assert escaped / 400 <= alpha + 0.02, escaped


def _cohort(total: float, square: float, n: int) -> Cohort:
    mean = total / n
    return Cohort(mean, n, math.sqrt(max(0.0, square / n - mean * mean) * n / (n - 1)))


@pytest.mark.slow
@pytest.mark.parametrize("share", [0.5, 0.1])
def test_identical_skewed_cohorts_are_almost_never_failed_however_often_they_are_judged(share):
    # latencies are skewed (lognormal, sigma 1.5), where one cohort's asymptotic interval alone is
    # optimistic; the gate's union bound over the two cohorts keeps a false fail, with an alert margin
    # of 0 (the strictest), judged every 10 bookings up to 4,000, within 1 - confidence
    rng = random.Random(11)
    fails = 0
    for _ in range(200):
        t, c = [0.0, 0.0, 0], [0.0, 0.0, 0]
        for i in range(4000):
            cohort = t if rng.random() < share else c
            x = 50.0 * rng.lognormvariate(0.0, 1.5)
            cohort[0], cohort[1], cohort[2] = cohort[0] + x, cohort[1] + x * x, cohort[2] + 1
            if (
                i % 10 == 0
                and t[2] >= 30
                and c[2] >= 30
                and difference_interval("latency", _cohort(*t), _cohort(*c), 0.99)[0] > 0
            ):
                fails += 1
                break
    assert fails / 200 <= 0.01, fails


def test_the_bound_narrows_with_samples_and_scales_with_the_spread():
    assert mean_margin(1000, 10.0, 0.005) < mean_margin(100, 10.0, 0.005) < mean_margin(30, 10.0, 0.005)
    assert mean_margin(100, 20.0, 0.005) == pytest.approx(2 * mean_margin(100, 10.0, 0.005))


def test_rate_difference_verdicts_on_constructed_cohorts():
    def verdict(t_errors, t_n, c_errors, c_n, min_samples=50):
        return judge_difference(
            "booking_error_rate",
            0.005,
            0.02,
            Cohort(t_errors / t_n if t_n else None, t_n),
            Cohort(c_errors / c_n if c_n else None, c_n),
            min_samples,
            300.0,
            0.99,
        )

    v, diff, interval, reason = verdict(30, 100, 1, 1000)
    assert v == FAIL and diff == pytest.approx(0.299) and interval[0] > 0.02
    assert "treatment 30.00% vs control 0.10%, difference +29.90% > alert +2.00%" in reason
    assert "treatment 100 / control 1000 samples" in reason and "always-valid interval" in reason
    assert verdict(2, 1000, 1, 1000)[0] == PASS
    assert verdict(5, 100, 1, 1000)[0] == HOLD  # 4.9 points worse, but 100 samples do not make it clear
    assert verdict(1, 40, 1, 1000)[0] == HOLD and "fewer than the 50 needed in each" in verdict(1, 40, 1, 1000)[3]
    v, diff, interval, reason = verdict(0, 0, 1, 1000)
    assert v == HOLD and diff is None and "no data is never a pass" in reason


def test_latency_difference_a_slower_treatment_fails_an_equal_one_passes():
    slow = judge_difference(
        "booking_latency_ms", 50, 250, Cohort(900.0, 200, 150.0), Cohort(120.0, 1800, 60.0), 50, 300.0, 0.99
    )
    assert slow[0] == FAIL and "difference +780 ms > alert +250 ms" in slow[3]
    same = judge_difference(
        "booking_latency_ms", 50, 250, Cohort(125.0, 200, 60.0), Cohort(120.0, 1800, 60.0), 50, 300.0, 0.99
    )
    assert same[0] == PASS and "difference +5.0 ms < target +50 ms" in same[3]
    low, high = difference_interval("latency", Cohort(125.0, 200, 60.0), Cohort(120.0, 1800, 60.0), 0.99)
    assert low < 5 < high


def test_an_answer_without_cohorts_is_no_data_never_a_pass():
    verdict = evaluate(_gates(), {})
    assert [m.verdict for m in verdict.metrics] == [HOLD, HOLD, HOLD]
    assert "no data is never a pass" in verdict.metrics[0].reason


def test_at_100_percent_there_is_no_control_and_the_metric_says_so():
    spec = MetricGate(metric="booking_latency_ms", kind="compare", target=50, alert=250)
    reading = Reading(None, 0, 300.0, cohorts=(Cohort(900.0, 500, 10.0), Cohort(None, 0)), percent=100)
    result = judge_compare(spec, reading, 50, 0.99)
    assert result.verdict == PASS and "not compared, no control group at 100%" in result.reason


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"metric": "booking_latency_ms", "target": 50, "alert": 250}, "write kind: compare"),
        ({"metric": "success_rate", "kind": "compare", "target": 0, "alert": 0.01}, "cannot be compared"),
        ({"metric": "booking_latency_ms", "kind": "compare", "target": 250, "alert": 50}, "must not be below target"),
        (
            {"metric": "latency", "provider": "prom", "kind": "compare", "query": "x", "target": 1, "alert": 2},
            "needs a PromQL query with \\$cohort",
        ),
    ],
)
def test_the_playbook_refuses_a_compare_gate_that_cannot_be_judged(fields, problem):
    with pytest.raises((FieldProblems, ValueError), match=problem):
        MetricGate(**fields)


def _gates() -> GateSet:
    return GateSet(
        window=300,
        min_samples=15,
        metrics=[
            MetricGate(metric="confirmation_delay_ms", kind="compare", target=200, alert=500),
            MetricGate(metric="booking_latency_ms", kind="compare", target=50, alert=250),
            MetricGate(metric="booking_error_rate", kind="compare", target=0.005, alert=0.02),
        ],
    )


def _verdict(service) -> dict[str, object]:
    gates = _gates()
    verdict = evaluate(gates, {str(gates.window): service.metrics(300)})
    return {m.metric: m for m in verdict.metrics}


def _book_all(service, count: int) -> list[int]:
    return [service.book(n, customer=f"customer-{n}")["id"] for n in range(1, count + 1)]


@pytest.mark.slow
def test_whatsapp_slowed_for_its_customers_only_fails_the_compare_gate(make_service, sandbox):
    service = make_service(clock=SystemClock(), WHATSAPP_ROLLOUT_PERCENT=50)
    sandbox.faults(latency_ms=1200)
    ids = _book_all(service, 80)
    for booking_id in ids:
        service.wait_status(booking_id, "sent", "skipped", timeout=20)
    cohorts = service.metrics(300)["cohorts"]
    assert cohorts["treatment"]["confirmations"] >= 15 and cohorts["control"]["confirmations"] >= 15
    results = _verdict(service)
    delay = results["confirmation_delay_ms"]
    assert delay.verdict == FAIL and delay.interval[0] > 500, delay.reason
    assert "treatment is worse than control" in delay.reason
    # the booking request itself never waits for WhatsApp (the outbox): the booking flow is not hurt
    assert results["booking_latency_ms"].verdict == PASS, results["booking_latency_ms"].reason
    assert results["booking_error_rate"].verdict == PASS, results["booking_error_rate"].reason


@pytest.mark.slow
def test_a_slowdown_for_everyone_does_not_fail_the_compare_gate(make_service, sandbox):
    service = make_service(clock=SystemClock(), WHATSAPP_ROLLOUT_PERCENT=50)
    stop = threading.Event()

    def contend() -> None:  # another writer on the database: every request of both cohorts waits for it
        db = sqlite3.connect(service.db, isolation_level=None, timeout=10)
        while not stop.is_set():
            db.execute("BEGIN IMMEDIATE")
            time.sleep(0.06)
            db.execute("COMMIT")
            time.sleep(0.01)
        db.close()

    writer = threading.Thread(target=contend)
    writer.start()
    try:
        ids = _book_all(service, 80)
    finally:
        stop.set()
        writer.join()
    for booking_id in ids:
        service.wait_status(booking_id, "sent", "skipped", timeout=20)
    wait_until(
        lambda: (
            service.metrics(300)["cohorts"]["control"]["booking_requests"]
            + service.metrics(300)["cohorts"]["treatment"]["booking_requests"]
            == 80
        ),
        what="every request counted",
    )
    cohorts = service.metrics(300)["cohorts"]
    assert cohorts["treatment"]["booking_latency_ms"] > 20 and cohorts["control"]["booking_latency_ms"] > 20
    results = _verdict(service)
    for metric in ("booking_latency_ms", "confirmation_delay_ms", "booking_error_rate"):
        assert results[metric].verdict != FAIL, results[metric].reason


def test_plan_says_what_traffic_a_ramp_needs_to_decide(monkeypatch):
    from rollout.engine.steps import describe as _describe
    from rollout.playbook.load import load_playbook

    for name in ("ROLLOUT_MIN_SAMPLES", "ROLLOUT_GATE_WINDOW", "ROLLOUT_RAMP_HOLD"):
        monkeypatch.delenv(name, raising=False)
    book = load_playbook(Path(__file__).resolve().parents[2] / "playbooks" / "whatsapp.yaml")
    ramp = book.phases[-1].steps[-1]
    # 50 samples per metric in the 5-minute window, at the 10 % cohort (and a 50 % control): 50 / 300 / 0.1
    assert _describe(ramp, book).endswith(
        "deciding needs 50 samples per metric in a 5m window: about 1.7 "
        "bookings/s overall at 10% (less and the steps hold, then wait for approval)"
    )


def test_pass_when_interval_a_compare_metric_passes_only_when_surely_below_the_target():
    few = judge_difference(
        "booking_latency_ms",
        50,
        250,
        Cohort(125.0, 30, 80.0),
        Cohort(120.0, 30, 80.0),
        20,
        300.0,
        0.99,
        pass_when="interval",
    )
    assert few[0] == HOLD and "< target +50 ms but not yet sure" in few[3]
    many = judge_difference(
        "booking_latency_ms",
        50,
        250,
        Cohort(125.0, 5000, 60.0),
        Cohort(120.0, 5000, 60.0),
        20,
        300.0,
        0.99,
        pass_when="interval",
    )
    assert many[0] == PASS
