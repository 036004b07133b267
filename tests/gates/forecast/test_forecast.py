"""The forecasts against simulated truth: every cell that ``benchmarks/gates_simulation.py`` measured by
brute force (1,000 steps a cell, its tables in docs/figures.md and docs/gates.md), forecast again by
:mod:`rollout.gates.forecast` with its own seeded simulation, within 15 % (or within the two
simulations' sampling error where 15 % of a small share is less than that)."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest

from rollout.gates import forecast as F
from rollout.gates.forecast.simulation import _count_edges, _value_edges
from rollout.gates.judge import judge
from rollout.playbook.model import GateSet, MetricGate, RampStep

DOCS = Path(__file__).resolve().parents[3] / "docs"
MEASURED_STEPS = 1000
REPS = 1000


def _table(text: str, header: str) -> list[list[str]]:
    """The rows of the markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _share(cell: str) -> float | None:
    match = re.match(r"\**([\d.]+) ?%", cell)
    return float(match.group(1)) / 100 if match else None


def _seconds(cell: str) -> float | None:
    match = re.match(r"([\d.]+) ?s$", cell.strip())
    return float(match.group(1)) if match else None


def close_share(forecast: float, measured: float, steps: int = REPS) -> bool:
    """Within 15 %, or within three standard errors of the two simulations' difference."""
    mean = max((forecast + measured) / 2, 1 / MEASURED_STEPS)
    noise = 3 * math.sqrt(mean * (1 - mean) * (1 / MEASURED_STEPS + 1 / steps))
    return abs(forecast - measured) <= max(0.15 * measured, noise)


def close_time(forecast: float | None, measured: float | None, interval: float, fails: float = 1000) -> bool:
    """Within 15 %, or within one evaluation (times are whole evaluations); two when fewer than 200
    steps failed (the median of a few hundred whole evaluations moves by one from run to run)."""
    if forecast is None or measured is None:
        return forecast is None and measured is None
    evaluations = 1 if fails >= 200 else 2
    return abs(forecast - measured) <= max(0.15 * measured, evaluations * interval + 1e-9)


SPEC = {"metric": "error_rate", "target": 0.01, "alert": 0.05}
SETTINGS = {
    "production": {"window": 300, "min_samples": 50, "hold": 1800, "interval": 60, "max_hold": 7200},
    "demo": {"window": 10, "min_samples": 10, "hold": 4, "interval": 0.5, "max_hold": 10},
}
GATES = {"today": ("wilson", 0.95), "new": ("sequential", 0.99)}


def _step(s: dict, percent: int = 100) -> RampStep:
    return RampStep(
        kind="ramp", percentages=[percent], hold=s["hold"], gate="g", interval=s["interval"], max_hold=s["max_hold"]
    )


@pytest.mark.slow
def test_rate_gates_agree_with_the_benchmark_cell_by_cell():
    rows = _table((DOCS / "figures.md").read_text(), "| settings | sends/s | true rate |")
    assert len(rows) == 48
    misses = []
    for settings, sends, rate, *cells in rows:
        s = SETTINGS[settings]
        for g, (test, confidence) in GATES.items():
            gates = GateSet(
                window=s["window"],
                min_samples=s["min_samples"],
                confidence=confidence,
                test=test,
                metrics=[MetricGate(**SPEC)],
            )
            truth = float(rate.rstrip("%")) / 100
            got = F.simulate(gates, _step(s), 100, float(sends), {"error_rate": truth}, s["interval"], reps=REPS)
            column = 0 if g == "today" else 1
            measured_rollback = _share(cells[column])
            if not close_share(got["ended"]["fail"], measured_rollback):
                misses.append((settings, sends, rate, g, "rollback", got["ended"]["fail"], measured_rollback))
            if cells[2 + column]:
                missed = 1 - got["within_hold"]
                if not close_share(missed, _share(cells[2 + column])):
                    misses.append((settings, sends, rate, g, "missed", missed, cells[2 + column]))
            medians, p95s, sent = (c.split(" / ")[column] for c in cells[4:7])
            fails = min(got["ended"]["fail"] * REPS, measured_rollback * MEASURED_STEPS)
            enough = fails >= 20
            if enough and not close_time(got["median_s"], _seconds(medians), s["interval"], fails):
                misses.append((settings, sends, rate, g, "median", got["median_s"], medians))
            if enough and not close_time(got["p95_s"], _seconds(p95s), s["interval"], fails):
                misses.append((settings, sends, rate, g, "p95", got["p95_s"], p95s))
            if enough and abs(got["bad_events_median"] - float(sent)) > max(0.15 * float(sent), 2):
                misses.append((settings, sends, rate, g, "failed sends", got["bad_events_median"], sent))
    assert not misses, misses


@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("correction", ["none", "bonferroni"])
def test_guardrail_families_agree_with_the_benchmark(k, correction):
    rows = _table((DOCS / "gates.md").read_text(), "| guardrails | correction |")
    [row] = [r for r in rows if r[0] == str(k) and r[1] == correction]
    s = SETTINGS["production"]
    metrics = [
        MetricGate(metric=f"errors_{i}", provider="p", kind="rate", query="q", samples="s", target=0.01, alert=0.05)
        for i in range(k)
    ]
    gates = GateSet(window=s["window"], min_samples=s["min_samples"], correction=correction, metrics=metrics)
    at_alert = F.simulate(gates, _step(s), 100, 5.0, {m.metric: 0.05 for m in metrics}, s["interval"], reps=REPS)
    assert close_share(at_alert["ended"]["fail"], _share(row[2])), (at_alert["ended"], row)
    breach = F.simulate(gates, _step(s), 100, 5.0, {"errors_0": 0.10}, s["interval"], reps=REPS)
    assert close_share(breach["ended"]["fail"], _share(row[3])), (breach["ended"], row)
    assert close_time(breach["median_s"], _seconds(row[4]), s["interval"]), (breach, row)
    assert close_time(breach["p95_s"], _seconds(row[5]), s["interval"]), (breach, row)


@pytest.mark.slow
@pytest.mark.parametrize("shift", [0.0, 150.0, 300.0, 600.0])
def test_latency_means_and_the_rank_judge_agree_with_the_benchmark(shift):
    rows = _table((DOCS / "gates.md").read_text(), "| true shift of the treatment |")
    row = rows[[0.0, 150.0, 300.0, 600.0].index(shift)]
    model = F.LatencyModel(300, 0.5, 0.02, 20)
    for judge_name, (failed, median) in (("mean", row[1:3]), ("rank", row[3:5])):
        gates = GateSet(
            window=120,
            min_samples=20,
            metrics=[
                MetricGate(metric="confirmation_delay_ms", kind="compare", target=50, alert=150, judge=judge_name)
            ],
        )
        step = RampStep(kind="ramp", percentages=[50], hold=300, gate="g", interval=5, max_hold=0)
        reps = 400
        got = F.simulate(
            gates,
            step,
            50,
            2.0,
            {"confirmation_delay_ms": shift},
            5,
            F.Assumptions(latency={"confirmation_delay_ms": model}),
            reps=reps,
        )
        assert close_share(got["ended"]["fail"], _share(failed), reps), (judge_name, got["ended"], row)
        if got["ended"]["fail"] * reps >= 20 and (_share(failed) or 0) * MEASURED_STEPS >= 20:
            assert close_time(got["median_s"], _seconds(median), 5), (judge_name, got, row)


def test_the_rate_edges_are_the_judges_own():
    """The simulation reads a rate's verdict off two edges found with the judge; at every count the
    edges give what the judge gives."""
    rng = random.Random(3)
    for _ in range(15):
        spec = MetricGate(**SPEC) if rng.random() < 0.5 else MetricGate(metric="success_rate", target=0.95, alert=0.9)
        gates = GateSet(
            window=60, min_samples=rng.choice([1, 10, 50]), confidence=rng.choice([0.9, 0.99, 0]), metrics=[spec]
        )
        n = rng.randint(0, 250)

        def verdict(k: float, n: int = n, spec: MetricGate = spec, gates: GateSet = gates) -> str:
            k = round(k)
            shown = None if n == 0 else ((n - k) / n if spec.higher else k / n)
            return judge(spec, shown, n, gates.min_samples, 60, gates.confidence).verdict

        fail_from, pass_to = _count_edges(verdict, n)
        for k in range(n + 1):
            expected = verdict(k)
            got = "fail" if k >= fail_from else "pass" if k <= pass_to else "hold"
            assert got == expected, (spec.metric, n, k, gates)


PLAYBOOK = Path(__file__).resolve().parents[3] / "playbooks" / "whatsapp.yaml"


def test_the_shipped_playbook_forecast_says_each_figure_per_step():
    from rollout.playbook.load import load_playbook

    book = load_playbook(PLAYBOOK)
    rows = F.forecast_steps(book, book.phase_for("production"), 50.0, reps=20)
    assert [r["percent"] for r in rows] == [10, 25, 50, 100]
    for row in rows:
        assert row["earliest_pass_s"] == 1800  # the 30 m hold: 50/s brings 50 samples well within it
        assert not row["warnings"]
        doubled = {b["metric"]: b for b in row["breaches"] if b["breach"] == "2x alert"}
        assert doubled["error_rate"]["value"] == pytest.approx(0.10)
        assert doubled["success_rate"]["value"] == pytest.approx(0.80)
        assert all(b["catch_90_s"] is not None and b["catch_99_s"] >= b["catch_90_s"] for b in doubled.values())
        assert row["false_rollback_at_alert"]["probability"] <= 0.05
        assert any("breaker_activations" in why for why in row["not_forecast"])
    assert rows[-1]["expected_elapsed_s"] == 4 * 1800
    # compare metrics drop out at 100 %: nobody to compare with
    assert "booking_error_rate" not in {b["metric"] for b in rows[-1]["breaches"]}


LOW_TRAFFIC = """\
version: 1
name: low
gates:
  g:
    window: 5m
    min_samples: 50
    metrics:
      - {metric: error_rate, target: 1%, alert: 5%}
phases:
  - name: production
    environment: production
    steps:
      - kind: configure
        set: {WHATSAPP_NOTIFICATIONS_ENABLED: "false"}
      - kind: ramp
        percentages: [10, 50]
        hold: 10m
        interval: 1m
        gate: g
        max_hold: 20m
"""


def test_a_low_traffic_step_that_cannot_decide_is_warned_with_the_setting_to_change(tmp_path):
    from rollout.playbook.load import load_playbook

    path = tmp_path / "low.yaml"
    path.write_text(LOW_TRAFFIC)
    book = load_playbook(path)
    ten, fifty = F.forecast_steps(book, book.phase_for("production"), 1.0, reps=60)
    # 10 % of 1/s is 0.1/s: 30 samples in a 5 m window, never the 50 needed
    assert ten["earliest_pass_s"] is None and not ten["decides_within_max_hold"]
    [warning] = [w for w in ten["warnings"] if "cannot decide" in w]
    assert "min_samples to at most 30" in warning and "window to at least 8m20s" in warning
    # 50 % of 1/s: 50 samples after 100 s, so it passes at the end of its hold
    assert fifty["earliest_pass_s"] == 600 and not [w for w in fifty["warnings"] if "cannot decide" in w]
    assert ten["expected_duration_s"] == 1800  # hold + max_hold, then a person


def test_traffic_is_read_as_people_write_it():
    assert F.parse_traffic("50/s") == 50
    assert F.parse_traffic("3000/m") == 50
    assert F.parse_traffic("180000/h") == 50
    assert F.parse_traffic("2.5") == 2.5
    for bad in ("fast", "-3/s", "0", "nan"):
        with pytest.raises(ValueError):
            F.parse_traffic(bad)


def test_the_mean_edges_are_the_judges_own():
    """Latency windows with many calls are read off two value edges found with the judge."""
    spec = MetricGate(metric="avg_latency_ms", target=2000, alert=5000)
    rng = random.Random(5)
    for n in (50, 300, 1500):
        for sd in (500.0, 5000.0):

            def verdict(v: float, n: int = n, sd: float = sd) -> str:
                return judge(spec, v, n, 50, 300, 0.99, "sequential", sd=sd).verdict

            fail_above, pass_below = _value_edges(verdict, 2000, 5000, sd)
            for _ in range(300):
                v = rng.uniform(0, 15000)
                assert ("fail" if v > fail_above else "pass" if v < pass_below else "hold") == verdict(v), (n, sd, v)


def test_a_reading_survives_the_record_as_the_judge_needs_it():
    """Every field a judge reads comes back from the record's JSON as it was; a NaN rank sample (a
    Prometheus point with no traffic) comes back as null, which the rank judge drops and counts alike."""
    import json as _json

    from rollout.gates.rank import judge_rank
    from rollout.gates.replay import decode_reading, encode_reading
    from rollout.gates.results import Reading
    from rollout.stats import Cohort

    reading = Reading(
        0.123456789,
        17,
        29.5,
        sd=3.3,
        above=2,
        percent=25,
        cohorts=(Cohort(0.1, 40, 1.5), Cohort(0.2, 120, None)),
        cohort_samples=([1.0, float("nan"), 3.5] * 10, [2.0, 2.5] * 15),
    )
    back = decode_reading(_json.loads(_json.dumps(encode_reading(reading, 4.25))))
    assert (back.value, back.samples, back.window, back.sd, back.above, back.percent) == (
        0.123456789,
        17,
        29.5,
        3.3,
        2,
        25,
    )
    assert back.cohorts == reading.cohorts
    spec = MetricGate(metric="confirmation_delay_ms", kind="compare", target=50, alert=150, judge="rank")
    assert judge_rank(spec, back, 5, 0.99).as_dict() == judge_rank(spec, reading, 5, 0.99).as_dict()
