"""What each judge read is kept with every evaluation, beside the results (not in them): both state
stores keep it, give it back only when asked, and a state file from before it gets the column."""

from __future__ import annotations

import sqlite3

import pytest

from rollout.engine.pgstate import PgStateStore
from rollout.engine.state import StateStore

METRICS = [{"metric": "error_rate", "verdict": "hold", "value": 0.5, "samples": 2}]
READINGS = {"error_rate": {"value": 0.5, "samples": 2, "window": 30.0, "elapsed": 4.0}}


def _round_trip(store) -> None:
    store.record_verdict("production", 1.0, "p", "ramp", 10, "hold", "hold: ...", METRICS, None, 0.01, READINGS)
    store.record_verdict("production", 2.0, "p", "ramp", 10, "hold", "hold: ...", METRICS)  # an older engine's
    plain = store.verdicts("production")
    assert [v["metrics"] for v in plain] == [METRICS, METRICS] and "readings" not in plain[0]
    read = store.verdicts("production", readings=True)
    assert read[0]["metrics"] == [{**METRICS[0], "reading": READINGS["error_rate"]}]
    assert read[1]["metrics"] == METRICS


def test_sqlite_keeps_the_readings_apart_and_adds_the_column_to_an_older_file(tmp_path):
    old = tmp_path / "old.db"
    db = sqlite3.connect(old)
    db.execute(
        "CREATE TABLE verdicts (id INTEGER PRIMARY KEY, ts REAL NOT NULL, environment TEXT NOT NULL, phase TEXT, "
        "step TEXT, percent INTEGER, verdict TEXT NOT NULL, summary TEXT NOT NULL, metrics TEXT NOT NULL, "
        "commit_sha TEXT)"
    )
    db.commit()
    db.close()
    store = StateStore(old)
    try:
        _round_trip(store)
    finally:
        store.close()


@pytest.mark.slow
def test_postgresql_keeps_the_readings_apart(postgres):
    store = PgStateStore(postgres.database())
    try:
        _round_trip(store)
    finally:
        store.close()
