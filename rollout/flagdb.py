"""The flag in PostgreSQL, for a fleet of service replicas: one row per environment, pushed to every
replica with ``LISTEN/NOTIFY`` (and polled as a safety net), and one row per replica saying which
flag version it has applied.

* The engine's ``postgres`` flag backend (:class:`PostgresFlags`) writes the row, bumps its version
  and NOTIFYs in one transaction.
* Each replica runs a :class:`FlagFollower` (``rollout serve --flag-db ...``): it applies the row to
  the service's live settings the moment it is notified, and reports ``applied_version``.
* :class:`ReplicasTarget` confirms a change only when every live replica reports it applied.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from rollout.checks.service_api import MeasurementError
from rollout.errors import ConfigError
from rollout.flagbackends import FlagWriteError, _BackendBase
from rollout.playbook.model import FlagSpec

CHANNEL = "rollout_flags"
#: a replica that has not reported for this long is gone (it does not hold a confirmation back)
REPLICA_TTL_S = 5.0
#: a replica that has not read its flag row for this long stops sending (shorter than the TTL, so a
#: replica counted as gone has already stopped)
FLAG_LEASE_S = 4.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS rollout_flags (
    environment TEXT PRIMARY KEY,
    enabled     BOOLEAN NOT NULL,
    percent     INTEGER,
    version     BIGINT NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout_replicas (
    replica_id      TEXT PRIMARY KEY,
    environment     TEXT NOT NULL,
    applied_version BIGINT,
    enabled         BOOLEAN,
    percent         INTEGER,
    seen_at         DOUBLE PRECISION NOT NULL
);
"""


def _connect(url: str) -> Any:
    import psycopg
    from psycopg.rows import dict_row

    from rollout.engine.pgstate import LOCK_CLASS, error_text, shown_url

    try:
        conn = psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, 1)", (LOCK_CLASS,))
            conn.execute(SCHEMA)
    except psycopg.Error as exc:
        raise ConfigError(f"{shown_url(url)}: cannot open the flag database ({error_text(exc)})") from exc
    return conn


class PostgresFlags(_BackendBase):
    """The engine's side: the environment's flag row (see the module docstring)."""

    def __init__(self, spec: FlagSpec, env: str, state_dir: Path, url: str) -> None:
        super().__init__(spec, env, state_dir)
        self.environment = env
        self._db = _connect(url)

    def describe(self) -> str:
        return f"rollout_flags[{self.environment}]"

    def state(self) -> tuple[bool, int | None]:
        row = self._db.execute("SELECT enabled, percent FROM rollout_flags WHERE environment = %s",
                               (self.environment,)).fetchone()
        return (bool(row["enabled"]), row["percent"]) if row else (False, None)

    def _remember(self, enabled: bool, percent: int | None) -> None:
        """The row is the record: nothing to keep beside it."""

    def version(self) -> int:
        row = self._db.execute("SELECT version FROM rollout_flags WHERE environment = %s",
                               (self.environment,)).fetchone()
        return int(row["version"]) if row else 0

    def _write(self, enabled: bool, percent: int) -> None:
        import psycopg

        try:
            with self._db.transaction():
                self._db.execute(
                    "INSERT INTO rollout_flags (environment, enabled, percent, version, updated_at) "
                    "VALUES (%s, %s, %s, 1, %s) ON CONFLICT (environment) DO UPDATE SET enabled = EXCLUDED.enabled, "
                    "percent = EXCLUDED.percent, version = rollout_flags.version + 1, updated_at = EXCLUDED.updated_at",
                    (self.environment, enabled, percent, time.time()))
                self._db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.environment))
        except psycopg.Error as exc:
            raise FlagWriteError(f"flag write to {self.describe()} failed ({str(exc).strip()[:200]}); the flag may "
                                 "not have changed") from exc

    def replicas(self) -> list[dict[str, Any]]:
        """The replicas of this environment that reported within :data:`REPLICA_TTL_S`."""
        return list(self._db.execute(
            "SELECT * FROM rollout_replicas WHERE environment = %s AND seen_at >= %s ORDER BY replica_id",
            (self.environment, time.time() - REPLICA_TTL_S)))

    def close(self) -> None:
        self._db.close()


class ReplicasTarget:
    """Confirms a flag change only when every live replica reports the version written."""

    can_confirm = True

    def __init__(self, flags: PostgresFlags, health: Any = None) -> None:
        self.flags, self.health = flags, health

    def applied(self) -> tuple[bool | None, int | None, dict[str, Any]]:
        version = self.flags.version()
        live = self.flags.replicas()
        if not live:
            raise MeasurementError(f"no replica of {self.flags.environment} reported in the last {REPLICA_TTL_S:g}s")
        behind = [r for r in live if (r["applied_version"] or 0) < version]
        if behind:
            raise MeasurementError(f"{len(live) - len(behind)} of {len(live)} replicas applied flag version {version}; "
                                   + ", ".join(f"{r['replica_id']} is at {r['applied_version']}" for r in behind))
        enabled, percent = self.flags.state()
        return enabled, percent, {"replicas": [r["replica_id"] for r in live], "version": version}


class FlagFollower:
    """A replica's side: follows its environment's flag row into the service's live settings."""

    def __init__(self, url: str, environment: str, replica_id: str | None = None, poll: float = 0.5,
                 flag_variable: str = "WHATSAPP_NOTIFICATIONS_ENABLED",
                 percent_variable: str = "WHATSAPP_ROLLOUT_PERCENT", lease: float = FLAG_LEASE_S) -> None:
        self.url, self.environment, self.poll, self.lease = url, environment, poll, lease
        self.replica_id = replica_id or f"{socket.gethostname()}-{os.getpid()}"
        self.variables = (flag_variable, percent_variable)
        self.version: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _connect(url).close()  # a bad URL stops start-up with one line, not a dead thread later

    def start(self, live: Any) -> None:
        self._live = live
        self._thread = threading.Thread(target=self._run, name="flag-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _apply(self, conn: Any) -> None:
        row = conn.execute("SELECT enabled, percent, version FROM rollout_flags WHERE environment = %s",
                           (self.environment,)).fetchone()
        if row is not None and row["version"] != self.version:
            flag, percent = self.variables
            values = {flag: "true" if row["enabled"] else "false"}
            if row["percent"] is not None:
                values[percent] = str(row["percent"])
            self._live.set_overlay(values, version=row["version"])
            self.version = row["version"]
        enabled, percent = (row["enabled"], row["percent"]) if row else (None, None)
        conn.execute(
            "INSERT INTO rollout_replicas (replica_id, environment, applied_version, enabled, percent, seen_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (replica_id) DO UPDATE SET environment = EXCLUDED.environment,"
            " applied_version = EXCLUDED.applied_version, enabled = EXCLUDED.enabled, percent = EXCLUDED.percent, "
            "seen_at = EXCLUDED.seen_at", (self.replica_id, self.environment, self.version, enabled, percent,
                                           time.time()))
        if row is not None:  # renewed only once the engine can see this replica: seen <=> still obeying
            self._live.renew_lease(self.lease)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = _connect(self.url)
                conn.execute(f"LISTEN {CHANNEL}")
                while not self._stop.is_set():
                    self._apply(conn)
                    # wake at once on a NOTIFY; the poll is the safety net (and the heartbeat)
                    for _ in conn.notifies(timeout=self.poll, stop_after=1):
                        pass
            except Exception:  # noqa: BLE001 - the database went away: try again; the lease runs out meanwhile
                if self._stop.wait(1.0):
                    return
