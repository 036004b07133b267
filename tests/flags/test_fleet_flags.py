"""A fleet of replicas following one flag row in a real PostgreSQL: a flag-off through the postgres
backend reaches every replica (LISTEN/NOTIFY), sends stop on each, and a change is confirmed only
when every live replica reports it applied."""

from __future__ import annotations

import time

import pytest

from rollout.booking.flags.postgres import FlagFollower
from rollout.booking.service.settings import LiveSettings
from rollout.engine.project import Project
from rollout.engine.runner import rollback
from rollout.flags.postgres import PostgresFlags
from rollout.playbook.model import FlagSpec
from rollout.targets import wait_service_applied
from rollout.targets.fleet import ReplicasTarget
from rollout.util.clock import SystemClock
from tests.support.harness import ADMIN_TOKEN, SANDBOX_TOKEN, Service, base_env, wait_until
from tests.support.postgres import Postgres


@pytest.fixture
def fleet(tmp_path, sandbox, postgres):
    url = postgres.database()
    replicas = [
        Service(
            tmp_path / f"r{i}",
            base_env(sandbox.api_url, WHATSAPP_NOTIFICATIONS_ENABLED=False),
            clock=SystemClock(),
            flag_source=FlagFollower(url, "production", f"r{i}", poll=0.5),
            db=url,
        )  # one shared outbox, in the same database as the flag
        for i in (1, 2)
        if (tmp_path / f"r{i}").mkdir() is None
    ]
    flags = PostgresFlags(FlagSpec(backend="postgres", database="${FLAG_DB_URL}"), "production", tmp_path, url)
    yield url, replicas, flags
    flags.close()
    for replica in replicas:
        replica.close()


@pytest.mark.slow
def test_a_flag_off_reaches_every_replica_and_stops_their_sends(fleet):
    _url, replicas, flags = fleet
    flags.set(enabled=True, percent=100)
    for replica in replicas:
        wait_until(
            lambda r=replica: (m := r.metrics(1))["flag_enabled"] and m["flag_version"] == 1,
            timeout=10,
            what="the replica to follow the flag on",
        )
    assert wait_service_applied(flags, ReplicasTarget(flags), SystemClock(), 5) is None
    for n, replica in enumerate(replicas, 1):
        assert replica.wait_status(replica.book(n)["id"], "sent")["reason"] in ("sent", "accepted")
    flags.set(enabled=False)
    for replica in replicas:
        wait_until(lambda r=replica: r.metrics(1)["flag_enabled"] is False, timeout=10, what="the flag off")
        health = replica.http.get("/api/whatsapp/health").json()
        assert health["replica_id"] in ("r1", "r2") and health["flag_version"] == 2
    for n, replica in enumerate(replicas, 10):
        assert replica.wait_status(replica.book(n)["id"], "skipped")["reason"] == "flag_off"
    assert wait_service_applied(flags, ReplicasTarget(flags), SystemClock(), 5) is None


@pytest.mark.slow
def test_a_replica_that_has_not_applied_the_change_holds_the_confirmation_back(fleet):
    _url, _replicas, flags = fleet
    flags.set(enabled=True, percent=50)
    wait_until(lambda: len([r for r in flags.replicas() if r["applied_version"] == 1]) == 2, timeout=10)
    # a third replica is alive (it reports) but stuck on an old version
    flags._db.execute(
        "INSERT INTO rollout_replicas (replica_id, environment, applied_version, seen_at) "
        "VALUES ('r-stuck', 'production', 0, %s)",
        (time.time() + 60,),
    )
    problem = wait_service_applied(flags, ReplicasTarget(flags), SystemClock(), 0.5)
    assert problem is not None and "2 of 3 replicas applied flag version 1; r-stuck is at 0" in problem


#: a playbook on the postgres flag backend (its database ``${FLAG_DB_URL}``), one configure step
FLEET_PLAYBOOK = """\
version: 1
name: fleet
flag: {backend: postgres, database: "${FLAG_DB_URL}"}
gates:
  g: {window: 10s, metrics: [{metric: success_rate, target: 95%, alert: 90%}]}
watch: {gate: g}
phases:
  - name: production
    environment: production
    steps:
      - {kind: configure}
"""


@pytest.mark.slow
def test_a_rollback_through_the_postgres_backend_is_confirmed_by_the_fleet(fleet, tmp_path, monkeypatch):
    url, replicas, flags = fleet
    flags.set(enabled=True, percent=100)
    monkeypatch.setenv("FLAG_DB_URL", url)
    monkeypatch.setenv("ZAPTRA_API_TOKEN", SANDBOX_TOKEN)
    monkeypatch.setenv("ROLLOUT_ADMIN_TOKEN", ADMIN_TOKEN)
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "production.yaml").write_text(f"name: production\nservice_url: {replicas[0].url}\n")
    (tmp_path / "p.yaml").write_text(FLEET_PLAYBOOK)
    project = Project(tmp_path / "p.yaml", tmp_path / "environments", tmp_path / "state.db")
    outcome = rollback(project, "production", "pager", SystemClock(), who="oncall")
    assert (outcome.exit_code, outcome.details["confirmed"]) == (0, True), outcome.message
    assert all(r.metrics(1)["flag_enabled"] is False for r in replicas)


def test_the_flag_overlay_is_a_lease_that_fails_closed_when_not_renewed(tmp_path):
    now = [100.0]
    live = LiveSettings(
        environ={"WHATSAPP_NOTIFICATIONS_ENABLED": "false", "ZAPTRA_API_TOKEN": SANDBOX_TOKEN}, monotonic=lambda: now[0]
    )
    live.set_overlay({"WHATSAPP_NOTIFICATIONS_ENABLED": "true"}, version=1, lease_s=4.0)
    assert live.current().notifications_enabled and not live.lease_expired
    now[0] += 3.9
    assert live.current().notifications_enabled
    now[0] += 0.2
    assert not live.current().notifications_enabled and live.lease_expired
    live.renew_lease(4.0)
    assert live.current().notifications_enabled and not live.lease_expired


@pytest.mark.slow
def test_a_replica_cut_off_from_the_flag_database_stops_sending_before_the_engine_counts_it_gone(sandbox, tmp_path):
    own = Postgres()  # a server of its own: this test stops it
    try:
        url = own.database()
        flags = PostgresFlags(FlagSpec(backend="postgres", database="${FLAG_DB_URL}"), "production", tmp_path, url)
        flags.set(enabled=True, percent=100)
        flags.close()
        (tmp_path / "r1").mkdir()
        replica = Service(
            tmp_path / "r1",
            base_env(sandbox.api_url, WHATSAPP_NOTIFICATIONS_ENABLED=False),
            clock=SystemClock(),
            flag_source=FlagFollower(url, "production", "r1", poll=0.2, lease=1.0),
        )
        try:
            wait_until(lambda: replica.metrics(1)["flag_enabled"], timeout=10, what="the flag on from the row")
            assert replica.wait_status(replica.book(1)["id"], "sent")["status"] == "sent"
            own.stop()
            wait_until(
                lambda: replica.metrics(1)["flag_enabled"] is False,
                timeout=10,
                what="the replica to stop once its lease ran out",
            )
            health = replica.http.get("/api/whatsapp/health").json()
            assert "flag source (postgres) unreachable past the lease; sends stopped" in health["problems"]
            assert replica.wait_status(replica.book(2)["id"], "skipped")["reason"] == "flag_off"
        finally:
            replica.close()
    finally:
        own.close()
