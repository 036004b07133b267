"""The engine's state on a real PostgreSQL server: the same record, an advisory writer lock that a
kill -9 frees at once, an append-only audit log, and the kill switch that never waits."""

from __future__ import annotations

import json
import signal

import psycopg
import pytest

from rollout.engine.pgstate import PgStateStore
from rollout.flags import FlagStore
from rollout.util.pg import shown_url
from tests.cli.test_cli_engine import project, rollout, start  # noqa: F401 - fixtures
from tests.support.harness import wait_until

#: starts real servers (or kills real processes): outside the fast loop
pytestmark = pytest.mark.slow


def test_the_record_round_trips(postgres):
    url = postgres.database()
    store = PgStateStore(url)
    try:
        store.update("production", 10.0, status="running", phase="production", ramp_applied=True, percent=25, flag=1)
        with store.tx() as db:
            store.update("production", 11.0, db=db, step_index=3)
            store.audit("production", "ramp", 11.0, who="ana", db=db, percent=25, verdict={"interval": (0.1, 0.2)})
        store.record_verdict(
            "production",
            12.0,
            "production",
            "ramp",
            25,
            "pass",
            "pass: fine",
            [{"metric": "error_rate", "value": 0.0, "interval": None}],
            "abc123",
        )
        row = store.get("production")
        assert (row.status, row.step_index, row.ramp_applied, row.percent, row.flag) == ("running", 3, True, 25, True)
        [entry] = store.audit_log("production")
        assert entry["actor"] == "ana" and entry["detail"] == {"percent": 25, "verdict": {"interval": [0.1, 0.2]}}
        assert store.verdicts("production")[0]["metrics"][0]["metric"] == "error_rate"
        assert store.get("nowhere").status == "idle" and [e.name for e in store.all()] == ["production"]
    finally:
        store.close()
    # two stores open the same database at once: the schema is created once, no error
    PgStateStore(url).close()


def test_the_audit_log_is_append_only(postgres):
    url = postgres.database()
    store = PgStateStore(url)
    store.audit("production", "flag_off", 1.0, reason="x")
    store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in ("UPDATE audit SET actor = 'mallory'", "DELETE FROM audit", "TRUNCATE audit"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 1


def test_a_bad_url_is_one_line_without_the_password(postgres):
    with pytest.raises(Exception) as info:
        PgStateStore(f"postgresql://postgres:s3cret@127.0.0.1:{postgres.port}/no_such_database")
    assert "cannot open the state database" in str(info.value) and "s3cret" not in str(info.value)
    assert shown_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"


def test_two_advances_on_two_connections_one_is_refused_and_kill_9_frees_the_lock(project, postgres):  # noqa: F811
    cwd, service = project
    url = postgres.database()
    first = start(cwd, "advance", "--env", "production", "--state", url)
    try:
        wait_until(lambda: FlagStore(service.env_file).state() == (True, 10), timeout=30, what="ramp at 10%")
        second = rollout(cwd, "advance", "--env", "production", "--state", url)
        assert second.returncode == 2 and "is being advanced by tester" in second.stderr, second.stderr
        status = json.loads(rollout(cwd, "status", "--env", "production", "--json", "--state", url).stdout)[0]
        assert status["status"] == "running" and status["lock"]["owner"] == "tester"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # the server dropped the dead connection and its lock with it: status knows, and a new advance
        # takes over at once (no pid to probe, no host to match)
        status = json.loads(rollout(cwd, "status", "--env", "production", "--json", "--state", url).stdout)[0]
        assert status["status"] == "interrupted" and status["lock"] is None
        again = start(cwd, "advance", "--env", "production", "--state", url)
        try:
            wait_until(
                lambda: any(a["action"] == "lock_recovered" for a in PgAudit(url)),
                timeout=30,
                what="the second advance to take the lock over",
            )
            # the kill switch does not wait for the lock the running advance holds
            back = rollout(cwd, "rollback", "--env", "production", "--reason", "pager", "--state", url)
            assert back.returncode == 0, back.stderr
            out, err = again.communicate(timeout=30)
            assert again.returncode == 1 and "rolled back meanwhile" in out + err
        finally:
            again.kill()
            again.wait()
    finally:
        first.kill()
        first.wait()
    assert FlagStore(service.env_file).state()[0] is False
    actions = [a["action"] for a in PgAudit(url)]
    assert actions.count("ramp") == 1 and "flag_off" in actions and "flag_off_confirmed" in actions


def PgAudit(url: str) -> list[dict]:
    store = PgStateStore(url)
    try:
        return store.audit_log("production")
    finally:
        store.close()


def test_a_writer_frozen_inside_a_transaction_does_not_hold_the_others_up(postgres, monkeypatch):
    """An agent stopped (SIGSTOP, a paused VM) between two statements of a transaction keeps its row
    locks; the server ends its session after ``FROZEN_TX_MS`` so another agent's write goes through."""
    import threading

    from rollout.engine import pgstate

    monkeypatch.setattr(pgstate, "FROZEN_TX_MS", 300)
    url = postgres.database()
    frozen, other = PgStateStore(url), PgStateStore(url)
    try:
        frozen.update("production", 1.0, status="running")
        held = frozen.tx()
        db = held.__enter__()  # the row locked, the transaction left open: the process froze here
        frozen.update("production", 2.0, db=db, status="held")
        done = threading.Event()
        writer = threading.Thread(target=lambda: (other.update("production", 3.0, status="running"), done.set()))
        writer.start()
        writer.join(60)  # without the timeout it would wait for the frozen one forever
        assert done.is_set()
        assert other.get("production").status == "running"  # the frozen transaction's write never landed
        # woken, the frozen one finds its session gone once, then works on a new one
        with pytest.raises(Exception):  # noqa: B017 - psycopg's error for a session the server ended
            held.__exit__(None, None, None)
        assert frozen.get("production").status == "running"
    finally:
        other.close()
        try:
            frozen.close()
        except Exception:  # noqa: BLE001 - its session was ended by the server, as intended
            pass
