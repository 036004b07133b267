"""Judging: a metric's readings against its thresholds (:mod:`rollout.gates.judge`), treatment against
control (:mod:`rollout.gates.compare`). Pure: no I/O; the statistics are :mod:`rollout.stats`."""

from __future__ import annotations

from rollout.gates.judge import (
    FAIL,
    HOLD,
    PASS,
    MetricResult,
    Reading,
    Verdict,
    embedded_reading,
    evaluate,
    fmt,
    judge,
    judge_compare,
    judge_readings,
    no_data,
    sample_ratio,
    windows_needed,
    with_check,
)

__all__ = [
    "FAIL",
    "HOLD",
    "PASS",
    "MetricResult",
    "Reading",
    "Verdict",
    "embedded_reading",
    "evaluate",
    "fmt",
    "judge",
    "judge_compare",
    "judge_readings",
    "no_data",
    "sample_ratio",
    "windows_needed",
    "with_check",
]
