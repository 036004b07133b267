"""Judging, pure (no I/O): one metric against its thresholds (:mod:`~rollout.gates.judge`), treatment
against control (:mod:`~rollout.gates.compare`), a gate set's verdict from one reading per metric
(:mod:`~rollout.gates.verdict`); what those are made of (:mod:`~rollout.gates.results`). The
statistics are :mod:`rollout.stats`; judge and compare use it and neither imports the other."""

from __future__ import annotations

from rollout.gates.compare import judge_compare, judge_difference, plain, signed
from rollout.gates.judge import judge
from rollout.gates.results import FAIL, HOLD, PASS, Alerts, MetricResult, Reading, Verdict, fmt
from rollout.gates.verdict import (
    SRM_MIN_COUNT,
    StepCounts,
    judge_readings,
    no_data,
    sample_ratio,
    settle,
    windows_needed,
    with_check,
)

__all__ = [
    "FAIL",
    "HOLD",
    "PASS",
    "SRM_MIN_COUNT",
    "Alerts",
    "MetricResult",
    "Reading",
    "StepCounts",
    "Verdict",
    "fmt",
    "judge",
    "judge_compare",
    "judge_difference",
    "judge_readings",
    "no_data",
    "plain",
    "sample_ratio",
    "settle",
    "signed",
    "windows_needed",
    "with_check",
]
