"""Durations, rates, and the gate verdict as data: (thresholds, measurement) -> verdict."""

from __future__ import annotations

import math
import random

import pytest

from rollout.gates import FAIL, HOLD, PASS, judge, no_data
from rollout.playbook.model import GateSet, MetricGate
from rollout.stats import confidence_sequence
from rollout.targets.embedded.provider import evaluate
from rollout.util.units import format_duration, parse_duration, parse_rate


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), (30, 30), ("500ms", 0.5), ("90s", 90), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1.5s", 1.5)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "5 minutes", -1, True, "1w"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_rates_and_formatting():
    assert parse_rate("95%") == pytest.approx(0.95) and parse_rate(0.9) == 0.9 and parse_rate("2000") == 2000
    with pytest.raises(ValueError):
        parse_rate("lots%")
    assert format_duration(90) == "1m30s" and format_duration(0.25) == "250ms"


SUCCESS = MetricGate(metric="success_rate", target=0.95, alert=0.90)
LATENCY = MetricGate(metric="avg_latency_ms", target=2000, alert=5000)

# (spec, value, samples, min_samples, verdict, words the reason must contain)
CASES = [
    (SUCCESS, 0.99, 100, 20, PASS, ["success_rate 99.00%", "> target 95.00%", "100 samples"]),
    (SUCCESS, 0.95, 100, 20, HOLD, ["between target 95.00% and alert 90.00%"]),  # exactly on target is not a pass
    (SUCCESS, 0.92, 100, 20, HOLD, ["between"]),
    (SUCCESS, 0.90, 100, 20, HOLD, ["between"]),  # exactly on alert is not yet a breach
    (SUCCESS, 0.89, 100, 20, FAIL, ["success_rate 89.00% < alert 90.00%", "100 samples"]),
    (SUCCESS, 0.10, 19, 20, HOLD, ["19 samples, fewer than the 20 needed"]),  # a breach needs enough samples
    (SUCCESS, 1.00, 19, 20, HOLD, ["fewer than the 20 needed"]),  # so does a pass
    (SUCCESS, None, 0, 20, HOLD, ["no data", "never a pass"]),
    (LATENCY, 150, 50, 20, PASS, ["avg_latency_ms 150 ms < target 2000 ms"]),
    (LATENCY, 3000, 50, 20, HOLD, ["between"]),
    (LATENCY, 5001, 50, 20, FAIL, ["> alert 5000 ms"]),
]


@pytest.mark.parametrize(("spec", "value", "samples", "min_samples", "verdict", "words"), CASES)
def test_judge(spec, value, samples, min_samples, verdict, words):
    result = judge(spec, value, samples, min_samples, 300)  # confidence 0: the point value decides
    assert result.verdict == verdict
    for word in words:
        assert word in result.reason
    assert (result.value, result.samples, result.target, result.alert) == (value, samples, spec.target, spec.alert)


def gate_set(**kw):
    return GateSet(
        window=60,
        min_samples=10,
        metrics=[
            SUCCESS,
            MetricGate(metric="error_rate", target=0.01, alert=0.05),
            MetricGate(metric="breaker_activations", target=1, alert=3, window=86400, min_samples=1),
        ],
        **kw,
    )


def answer(**kw):
    base = {
        "attempts": 100,
        "provider_calls": 100,
        "latency_samples": 100,
        "success_rate": 0.99,
        "error_rate": 0.0,
        "breaker_activations": 0,
    }
    return {**base, **kw}


def test_worst_metric_decides_and_each_metric_reads_its_own_window():
    gates = gate_set()
    verdict = evaluate(gates, {"60.0": answer(), "86400.0": answer(breaker_activations=0)})
    assert verdict.verdict == PASS and len(verdict.metrics) == 3
    verdict = evaluate(gates, {"60.0": answer(error_rate=0.03), "86400.0": answer()})
    assert verdict.verdict == HOLD and "error_rate 3.00% between" in verdict.summary
    verdict = evaluate(gates, {"60.0": answer(error_rate=0.03), "86400.0": answer(breaker_activations=4)})
    assert verdict.verdict == FAIL
    assert verdict.summary == "fail: breaker_activations 4 > alert 3 (100 samples, 1d)"


def test_missing_window_and_failed_measurement_hold():
    gates = gate_set()
    assert evaluate(gates, {"60.0": answer()}).verdict == HOLD  # the 1d window was not measured
    verdict = no_data(gates, "ConnectError")
    assert verdict.verdict == HOLD and "metrics unavailable: ConnectError" in verdict.summary


@pytest.mark.parametrize(
    ("metric", "target", "alert"), [("success_rate", 0.9, 0.95), ("error_rate", 0.05, 0.01), ("success_rate", 95, 90)]
)
def test_thresholds_must_make_sense(metric, target, alert):
    with pytest.raises(ValueError):
        MetricGate(metric=metric, target=target, alert=alert)


ERRORS = MetricGate(metric="error_rate", target=0.01, alert=0.05)

# (spec, value, samples, verdict, words): with 95% confidence a rate fails only when clearly beyond alert
CONFIDENT = [
    (ERRORS, 0.10, 10, HOLD, ["error_rate 10.00% > alert 5.00% but not yet clear", "95% interval 1.79%-40.42%"]),
    (ERRORS, 1.00, 10, FAIL, ["error_rate 100.00% > alert 5.00%", "95% interval 72.25%-100.00%"]),
    (ERRORS, 0.12, 400, FAIL, ["95% interval 9.17%-15.55%"]),
    (SUCCESS, 0.85, 20, HOLD, ["not yet clear"]),
    (SUCCESS, 0.0, 10, FAIL, ["success_rate 0.00% < alert 90.00%"]),
    (ERRORS, 0.0, 50, PASS, ["error_rate 0.00% < target 1.00%"]),
]


@pytest.mark.parametrize(("spec", "value", "samples", "verdict", "words"), CONFIDENT)
def test_a_fail_must_be_statistically_clear_with_the_fixed_sample_test(spec, value, samples, verdict, words):
    result = judge(spec, value, samples, 10, 60, confidence=0.95, test="wilson")
    assert result.verdict == verdict, result.reason
    for word in words:
        assert word in result.reason


# (spec, value, samples, verdict, words): the default, always-valid test at 99 %
SEQUENTIAL = [
    (ERRORS, 0.10, 10, HOLD, ["not yet clear", "99% always-valid interval"]),
    (ERRORS, 0.30, 10, HOLD, ["not yet clear"]),
    (ERRORS, 0.30, 30, FAIL, ["error_rate 30.00% > alert 5.00% (30 samples", "always-valid interval 7.96%-61.74%"]),
    (ERRORS, 1.00, 10, FAIL, ["interval 49.64%-100.00%"]),
    (SUCCESS, 0.0, 10, FAIL, ["success_rate 0.00% < alert 90.00%"]),
    (ERRORS, 0.0, 50, PASS, ["error_rate 0.00% < target 1.00%"]),
]


@pytest.mark.parametrize(("spec", "value", "samples", "verdict", "words"), SEQUENTIAL)
def test_the_sequential_test_fails_only_on_clear_evidence(spec, value, samples, verdict, words):
    result = judge(spec, value, samples, 10, 60, confidence=0.99)
    assert result.verdict == verdict, result.reason
    for word in words:
        assert word in result.reason, result.reason


@pytest.mark.parametrize(("successes", "n"), [(0, 10), (3, 10), (10, 10), (9, 30), (12, 1000), (990, 1000)])
def test_the_confidence_sequence_matches_a_brute_force_computation(successes, n):
    """The interval is every theta whose mixture evidence B(1+S, 1+n-S) / (theta^S (1-theta)^(n-S)) stays
    below 1/delta: computed here directly from the integral of the likelihood (a Riemann sum over the
    uniform prior) on a fine grid, independently of the code's closed form and bisection."""
    delta = 0.01
    grid = 20_000
    # the mixture's numerator, integral over p of p^S (1-p)^(n-S) dp, by a midpoint sum in log space
    logs = [
        successes * math.log((i + 0.5) / grid) + (n - successes) * math.log1p(-(i + 0.5) / grid) for i in range(grid)
    ]
    top = max(logs)
    log_integral = top + math.log(sum(math.exp(v - top) for v in logs) / grid)
    inside = [
        t / 2000
        for t in range(1, 2000)
        if log_integral - successes * math.log(t / 2000) - (n - successes) * math.log1p(-t / 2000) < math.log(1 / delta)
    ]
    low, high = confidence_sequence(successes / n, n, 1 - delta)
    assert low == pytest.approx(max(0.0, inside[0] - 0.0005), abs=0.001)
    assert high == pytest.approx(min(1.0, inside[-1] + 0.0005), abs=0.001)


@pytest.mark.slow
def test_looking_after_every_sample_keeps_false_alarms_under_the_bound():
    """The promise itself, simulated: streams whose true error rate sits exactly at the alert are
    judged after every single send, 1,500 sends each. The always-valid test fails at most 1 % of
    them; the fixed-sample Wilson test, looked at as often, fails many more."""
    rng = random.Random(11)
    spec = MetricGate(metric="error_rate", target=0.01, alert=0.05)
    streams, length = 300, 1500
    failed = {"sequential": 0, "wilson": 0}
    for _ in range(streams):
        errors = 0
        fired = {"sequential": False, "wilson": False}
        for n in range(1, length + 1):
            errors += rng.random() < spec.alert
            for test in ("sequential", "wilson"):
                if not fired[test] and n >= 10 and n % 5 == 0:
                    fired[test] = (
                        judge(spec, errors / n, n, 10, 60, 0.99 if test == "sequential" else 0.95, test).verdict == FAIL
                    )
        for test in fired:
            failed[test] += fired[test]
    assert failed["sequential"] / streams <= 0.01, failed
    assert failed["wilson"] > 3 * max(failed["sequential"], 1), failed


@pytest.mark.parametrize(
    ("inside", "outside", "percent", "verdict"),
    [
        (100, 900, 10, PASS),
        (112, 888, 10, PASS),
        (400, 600, 10, FAIL),
        (60, 940, 10, FAIL),
        (30, 50, 10, None),
        (2550, 2450, 50, PASS),
        (2700, 2300, 50, FAIL),
        (500, 0, 100, None),
    ],
)
def test_the_sample_ratio_check_on_constructed_counts(inside, outside, percent, verdict):
    from rollout.gates import sample_ratio

    result = sample_ratio(inside, outside, percent, 60, "bookings")
    assert (result.verdict if result else None) == verdict
    if verdict == FAIL:
        assert "sample ratio mismatch" in result.reason and "bucketing is broken, not the feature" in result.reason
        assert f"{inside} of {inside + outside} decided bookings" in result.reason


def test_low_traffic_is_said_early_with_the_time_a_decision_needs():
    from rollout.engine.observe import slow_traffic
    from rollout.gates import Verdict

    spec = MetricGate(metric="error_rate", target=0.01, alert=0.05)
    short = judge(spec, 0.0, 24, 50, 60)  # 0.4 samples/s; 50 samples take about 2 minutes
    verdict = slow_traffic(Verdict(HOLD, (short,)), hold=90)
    assert "at 0.4 samples/s this step needs about 2m5s to decide; the hold is 1m30s" in verdict.summary
    assert slow_traffic(Verdict(HOLD, (short,)), hold=600).summary == Verdict(HOLD, (short,)).summary


def test_a_hold_shows_a_live_line_on_a_terminal_and_nothing_when_piped():
    import io

    from rich.console import Console

    from rollout.console import ConsoleReporter
    from rollout.engine.observe import progress_line
    from rollout.gates import Verdict

    spec = MetricGate(metric="error_rate", target=0.01, alert=0.05)
    line = progress_line("ramp at 10%", Verdict(HOLD, (judge(spec, 0.0, 12, 50, 60),)), 65, 1800, 7200, 60)
    assert line == ("ramp at 10%: HOLD; 28m55s left in the hold; next evaluation in 1m; samples error_rate 12/50")
    terminal = io.StringIO()
    reporter = ConsoleReporter(Console(file=terminal, force_terminal=True, width=200))
    reporter.waiting(line)
    reporter.done_waiting()
    assert "28m55s left in the hold" in terminal.getvalue()
    piped = io.StringIO()
    reporter = ConsoleReporter(Console(file=piped, force_terminal=False, width=200))
    reporter.waiting(line)
    reporter.done_waiting()
    assert piped.getvalue() == ""
