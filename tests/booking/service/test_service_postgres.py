"""The service on PostgreSQL, as a fleet: one schema with a version, claims that skip rows another
replica holds, a dead replica's claims recovered (never resent), and two or three replicas draining
one outbox, one of them killed with SIGKILL under load. A real PostgreSQL server, the real service
and the sandbox; no mocks of the database."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import psycopg
import pytest

from rollout.booking.service import schema
from rollout.booking.service.pgstore import PostgresStore
from rollout.booking.service.schema import StorageError
from rollout.booking.service.store import Result, SqliteStore
from rollout.providers.prometheus import PrometheusMetrics
from rollout.util.clock import SystemClock
from rollout.util.envfile import write_env_file
from rollout.util.errors import MeasurementError
from rollout.util.serving import free_port
from tests.support.harness import Service, base_env, booking_body, serve_process, wait_until
from tests.support.prometheus import Prometheus

#: starts real servers (or kills real processes): outside the fast loop
pytestmark = pytest.mark.slow

NOW = 1_800_000_000.0


def _bookings(store, count: int) -> list[int]:
    return [store.create_booking(booking_body(n), NOW) for n in range(1, count + 1)]


def _refs_sent(sandbox) -> Counter:
    """How many times the sandbox received each booking reference (the template's 6th parameter)."""
    return Counter(m["parameters"][5] for m in sandbox.messages())


def _version(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]


def test_the_schema_is_created_with_its_version_and_a_newer_database_refuses_to_start(postgres, tmp_path):
    url = postgres.database()
    PostgresStore(url, "r1").close()
    PostgresStore(url, "r2").close()  # a second replica starting finds the schema current
    assert _version(url) == schema.LATEST
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (schema.LATEST + 1,))
    with pytest.raises(StorageError, match=f"schema version {schema.LATEST + 1}, newer than this rollout knows"):
        PostgresStore(url, "r1")
    done = subprocess.run(
        [sys.executable, "-m", "rollout", "serve", "--port", str(free_port()), "--db", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "newer than this rollout knows" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_database_that_cannot_be_reached_is_one_line_at_start_up(tmp_path):
    url = f"postgresql://nobody:secret-pw@127.0.0.1:{free_port()}/service"
    done = subprocess.run(
        [sys.executable, "-m", "rollout", "serve", "--port", str(free_port()), "--db", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "cannot open the service database" in done.stderr and "secret-pw" not in done.stderr


def test_a_sqlite_file_from_before_the_version_table_is_migrated_and_keeps_its_bookings(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    for sql in schema.MIGRATIONS[1]:
        old.execute(sql.format(id="INTEGER PRIMARY KEY", int="INTEGER", real="REAL"))
    old.execute(
        "INSERT INTO bookings (booking_ref, customer_id, parent_name, child_name, phone, event_name, venue, "
        "event_date, amount, payment_method, created_at) VALUES ('NB-1', 'c1', 'Asha', 'Ravi', "
        "'+919876543210', 'Camp', 'Hall', '2026-12-20', '1500', 'UPI', 1)"
    )
    old.execute(
        "INSERT INTO notifications (booking_id, status, next_attempt_at, created_at, updated_at) "
        "VALUES (1, 'pending', 0, 1, 1)"
    )
    old.commit()
    old.close()
    store = SqliteStore(path, "r1")
    [due] = store.claim_due(NOW, 10)
    assert due.booking_id == 1 and due.parameters[5] == "NB-1"
    assert store._all("SELECT claimed_by FROM notifications") == [{"claimed_by": "r1"}]
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(schema.LATEST,)]
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StorageError, match="schema version 99"):
        SqliteStore(path, "r1")


def test_a_claim_skips_rows_another_replica_holds_instead_of_waiting(postgres):
    url = postgres.database()
    a, b = PostgresStore(url, "a"), PostgresStore(url, "b")
    ids = _bookings(a, 10)
    with psycopg.connect(url) as other:  # another replica mid-claim: four rows locked
        other.execute("SELECT booking_id FROM notifications WHERE booking_id = ANY(%s) FOR UPDATE", (ids[:4],))
        started = time.monotonic()
        claimed_by_b = {d.booking_id for d in b.claim_due(NOW, 100)}
        assert time.monotonic() - started < 5  # it did not wait for the lock (the lock is held until below)
        assert claimed_by_b == set(ids[4:])
    claimed_by_a = {d.booking_id for d in a.claim_due(NOW, 100)}
    assert claimed_by_a == set(ids[:4])
    assert a.claim_due(NOW, 100) == [] and b.claim_due(NOW, 100) == []
    a.close()
    b.close()


def test_a_dead_replicas_claims_are_recovered_only_when_stale_and_its_late_result_is_dropped(postgres):
    url = postgres.database()
    a, b = PostgresStore(url, "a"), PostgresStore(url, "b")
    ids = _bookings(a, 5)
    held = [d.booking_id for d in a.claim_due(NOW, 3)]
    # b starting up does not touch a's fresh claims: they may be in flight right now
    assert b.recover_in_flight(NOW + 1, True, stale_before=NOW - 7) == []
    assert b.recover_stale(NOW + 6, True, stale_before=NOW - 1) == []
    assert sorted(b.recover_stale(NOW + 8, True, stale_before=NOW + 1)) == sorted(held)
    rows = {r["booking_id"]: r for r in b._all("SELECT booking_id, status, reason FROM notifications")}
    assert all((rows[i]["status"], rows[i]["reason"]) == ("failed", "unconfirmed") for i in held)
    assert {f["booking_id"] for f in b.fallbacks()} == set(held)
    # a was only slow: its answer comes back after the recovery and must not overwrite it
    results = [Result(i, "sent", "sent", message_id="m") for i in held]
    events = [e for i in held for e in ((NOW + 9, "call_ok", None, 12.0, i), (NOW + 9, "sent", "sent", None, i))]
    assert a.apply_results(results, events, NOW + 9) == sorted(held)
    assert {b.booking(i)["n_status"] for i in held} == {"failed"}
    counts = b.event_counts(0)
    assert counts.get(("sent", "sent"), 0) == 0 and counts[("call_ok", None)] == 3
    # a restarted under the same id takes its own claims back at once
    mine = [d.booking_id for d in a.claim_due(NOW + 10, 10)]
    assert len(mine) == 2 and set(mine).isdisjoint(held)
    a.close()
    a_again = PostgresStore(url, "a")
    assert sorted(a_again.recover_in_flight(NOW + 11, True, stale_before=NOW + 4)) == sorted(mine)
    assert sorted(i for i in ids if b.booking(i)["n_status"] == "failed") == sorted(ids)
    a_again.close()
    b.close()


def _claim_and_apply(store, loop: asyncio.AbstractEventLoop | None = None) -> dict:
    """One claim and one write-back with every case in it, on ``store``: an opted-out customer, a
    claim recovered as stale before its (late) result, and a sent, a retried and a failed result.
    With ``loop``: claimed and written back through the calls the outbox makes from its event loop."""
    claim_due, apply_results = store.claim_due, store.apply_results
    if loop is not None:
        claim_due = lambda *a: loop.run_until_complete(store.claim_due_async(*a))  # noqa: E731
        apply_results = lambda *a: loop.run_until_complete(store.apply_results_async(*a))  # noqa: E731
    ids = _bookings(store, 4)
    customer = store.booking(ids[1])["customer_id"]
    store.set_preferences(customer, True, NOW)
    [late] = claim_due(NOW, 1)
    claimed = {d.booking_id: d for d in claim_due(NOW + 5, 10)}
    assert store.recover_stale(NOW + 6, True, stale_before=NOW + 1) == [late.booking_id]
    sent, retried, failed = sorted(claimed)
    results = [
        Result(late.booking_id, "sent", "sent", message_id="m0"),
        Result(sent, "sent", "sent", message_id="m1", wamid="w1"),
        Result(retried, "pending", "http_500", next_attempt_at=NOW + 30, error="boom"),
        Result(failed, "failed", "", error="bad", fallback=True),
    ]
    events = [
        (NOW + 7, "call_ok", None, 12.5, late.booking_id),
        (NOW + 7, "sent", "sent", None, late.booking_id),
        (NOW + 7, "sent", "sent", None, sent),
        (NOW + 7, "failed", "http_400", None, failed),
        (NOW + 7, "booking", "treatment", 3.0, None),
    ]
    stale = apply_results(results, events, NOW + 7)
    return {
        "opted_out": sorted(d.booking_id for d in claimed.values() if d.opted_out),
        "stale": stale,
        "rows": store._all(
            "SELECT booking_id, status, reason, next_attempt_at, message_id, wamid, last_error "
            "FROM notifications ORDER BY booking_id"
        ),
        "fallbacks": sorted((f["booking_id"], f["reason"]) for f in store.fallbacks()),
        "events": store.event_counts(0),
        "ids": ids,
    }


def test_postgres_writes_a_claim_and_its_results_exactly_as_sqlite_does(postgres, tmp_path):
    """The outbox's loop claims and writes results back on PostgreSQL in one statement each, through
    a connection of its own; SQLite, and the plain calls on PostgreSQL, in several. Same outcome,
    case by case."""
    lite = SqliteStore(tmp_path / "s.db", "a")
    pg, pg_loop = PostgresStore(postgres.database(), "a"), PostgresStore(postgres.database(), "a")
    loop = asyncio.new_event_loop()
    try:
        on_sqlite, on_postgres = _claim_and_apply(lite), _claim_and_apply(pg)
        from_the_loop = _claim_and_apply(pg_loop, loop)
    finally:
        lite.close()
        pg.close()
        loop.run_until_complete(pg_loop.aclose())
        loop.close()
    assert on_postgres == on_sqlite
    assert from_the_loop == on_sqlite
    late, sent, retried, failed = on_sqlite["ids"]
    assert on_sqlite["opted_out"] == [sent] and on_sqlite["stale"] == [late]
    rows = {r["booking_id"]: r for r in on_sqlite["rows"]}
    assert (rows[late]["status"], rows[late]["reason"]) == ("failed", "unconfirmed")  # the late answer dropped
    assert (rows[sent]["status"], rows[sent]["message_id"], rows[sent]["wamid"]) == ("sent", "m1", "w1")
    assert (rows[retried]["status"], rows[retried]["next_attempt_at"]) == ("pending", NOW + 30)
    assert (rows[failed]["status"], rows[failed]["last_error"]) == ("failed", "bad")
    assert on_sqlite["fallbacks"] == [(late, "unconfirmed"), (failed, "failed")]
    events = on_sqlite["events"]
    assert events[("sent", "sent")] == 1 and events[("call_ok", None)] == 1 and events[("booking", "treatment")] == 1


@pytest.mark.parametrize("replicas", [2, 3])
def test_replicas_drain_one_outbox_with_no_duplicates_and_answer_for_the_fleet(postgres, sandbox, tmp_path, replicas):
    url = postgres.database()
    fleet = []
    try:
        for i in range(1, replicas + 1):
            (tmp_path / f"r{i}").mkdir()
            fleet.append(
                Service(tmp_path / f"r{i}", base_env(sandbox.api_url), clock=SystemClock(), db=url, replica_id=f"r{i}")
            )
        total = 60 * replicas
        for n in range(1, total + 1):
            fleet[n % replicas].book(n)
        wait_until(lambda: fleet[0].metrics()["outbox"]["sent"] == total, timeout=60, what="the fleet to send all")
        sent = _refs_sent(sandbox)
        assert len(sent) == total and max(sent.values()) == 1
        by_replica = {}
        for replica in fleet:
            text = replica.http.get("/metrics").text
            line = next(
                x for x in text.splitlines() if x.startswith('rollout_whatsapp_notifications_total{outcome="sent"')
            )
            assert f'replica="{replica.http.get("/api/whatsapp/health").json()["replica_id"]}"' in line
            by_replica[line] = float(line.rsplit(" ", 1)[1])
        assert sum(by_replica.values()) == total and all(v > 0 for v in by_replica.values())
        last = fleet[-1].metrics()
        assert last["scope"] == "fleet" and last["store"] == "postgresql" and last["successes"] == total
    finally:
        for replica in fleet:
            replica.close()


def test_kill_9_of_one_of_three_replicas_under_load_loses_nothing_and_sends_nothing_twice(postgres, sandbox, tmp_path):
    url = postgres.database()
    sandbox.faults(latency_ms=150)  # sends take a while, so the killed replica has claims in flight
    procs, urls = {}, {}
    for name in ("r1", "r2", "r3"):
        folder = tmp_path / name
        folder.mkdir()
        write_env_file(folder / "service.env", base_env(sandbox.api_url, WHATSAPP_TIMEOUT_MS=2000))
        port = free_port()
        procs[name], urls[name] = serve_process(port, folder, "--replica-id", name, db=url), f"http://127.0.0.1:{port}"
    try:
        for name in procs:
            wait_until(lambda u=urls[name]: _up(u), timeout=30, what=f"{name} to start")
        accepted, refused, targets = [], [], ["r1", "r2", "r3"]

        def post() -> None:  # 300 bookings over about 3 s, spread over the live replicas
            with httpx.Client(timeout=10) as http:
                for n in range(1, 301):
                    name = targets[n % len(targets)]
                    try:
                        response = http.post(f"{urls[name]}/api/bookings", json=booking_body(n))
                        (accepted if response.status_code == 201 else refused).append(n)
                    except httpx.HTTPError:
                        refused.append(n)
                    time.sleep(0.01)

        worker = threading.Thread(target=post)
        worker.start()
        wait_until(
            lambda: len(accepted) >= 100 and _count(url, "status = 'sending' AND claimed_by = 'r2'") > 0,
            timeout=20,
            what="r2 to have sends in flight",
        )
        procs["r2"].send_signal(signal.SIGKILL)
        targets.remove("r2")  # the load balancer notices
        procs["r2"].wait(10)
        worker.join(60)
        # r2's claims are recovered by the survivors once older than the timeout (2 s) plus the grace (5 s)
        wait_until(
            lambda: _count(url, "status IN ('pending', 'sending')") == 0, timeout=40, what="every notification to end"
        )
        committed = _count(url, "TRUE")
        assert committed == len(accepted) + len([n for n in refused if _exists(url, n)])
        assert committed >= 290
        sent = _refs_sent(sandbox)
        assert max(sent.values()) == 1  # nothing sent twice
        rows = _rows(url)
        unconfirmed = [r for r in rows if r[1] == "unconfirmed"]
        assert unconfirmed and {r[2] for r in unconfirmed} == {"r2"}
        fallbacks = {r[0] for r in _fallbacks(url)}
        for ref, reason, _, status in rows:  # every booking ended: sent once, or unconfirmed and in the fallback
            assert (status == "sent" and sent[ref] == 1) or (reason == "unconfirmed" and ref in fallbacks), ref
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(20)


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/api/whatsapp/health", timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def _count(url: str, condition: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM notifications WHERE {condition}").fetchone()[0]


def _exists(url: str, n: int) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT 1 FROM bookings WHERE booking_ref = %s", (f"NB-{n:06d}",)).fetchone() is not None


def _rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT b.booking_ref, n.reason, n.claimed_by, n.status FROM notifications n "
            "JOIN bookings b ON b.id = n.booking_id"
        ).fetchall()


def _fallbacks(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT b.booking_ref FROM fallback_outbox f JOIN bookings b ON b.id = f.booking_id"
        ).fetchall()


def test_one_prometheus_sums_the_fleet_and_a_gate_query_must_aggregate(postgres, sandbox, tmp_path):
    url = postgres.database()
    fleet = []
    prom = None
    try:
        for i in (1, 2):
            (tmp_path / f"r{i}").mkdir()
            fleet.append(
                Service(tmp_path / f"r{i}", base_env(sandbox.api_url), clock=SystemClock(), db=url, replica_id=f"r{i}")
            )
        for n in range(1, 21):
            fleet[n % 2].book(n)
        wait_until(lambda: fleet[0].metrics()["outbox"]["sent"] == 20, timeout=30, what="all 20 sent")
        prom = Prometheus(tmp_path / "prometheus", [f.url.removeprefix("http://") for f in fleet])
        metrics = PrometheusMetrics(prom.url, None, 5.0, "prom")
        # exported at 0 from each replica's start: both series exist whichever replica sent the 20
        query = 'rollout_whatsapp_notification_outcomes_total{outcome="sent"}'
        wait_until(lambda: metrics.query(f"count({query})", time.time()) == 2, timeout=30, what="both replicas scraped")
        assert metrics.query(f"sum({query})", time.time()) == 20
        assert metrics.query(f"count(count by (replica) ({query}))", time.time()) == 2  # told apart by replica
        with pytest.raises(MeasurementError, match="returned 2 series; a gate judges one number: aggregate it"):
            metrics.query(query, time.time())
        metrics.close()
    finally:
        if prom is not None:
            prom.close()
        for replica in fleet:
            replica.close()
