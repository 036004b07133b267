"""The engine's state in PostgreSQL (``--state postgresql://...``): the same record as the SQLite
store, shared by every machine that advances, watches or rolls back the same rollout.

The writer lock is a session advisory lock held by the advancing process's connection: when the
process dies (even by ``kill -9``) the server drops the connection and the lock with it, so the next
``advance`` takes over at once. A ``locks`` row says who holds it, for people; the advisory lock is
the truth. The audit log is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE on it. The
kill switch never waits for the writer lock, as with SQLite.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rollout.engine.state import StateRecords, actor
from rollout.util.connections import ThreadConnections
from rollout.util.errors import StateError
from rollout.util.numbers import finite
from rollout.util.pg import LOCK_CLASS, error_text, shown_url
from rollout.util.redact import Redactor

SCHEMA = """
CREATE TABLE IF NOT EXISTS environments (
    name            TEXT PRIMARY KEY,
    status          TEXT NOT NULL DEFAULT 'idle',
    phase           TEXT,
    step_index      INTEGER NOT NULL DEFAULT 0,
    ramp_index      INTEGER NOT NULL DEFAULT 0,
    ramp_applied    BOOLEAN NOT NULL DEFAULT FALSE,
    observe_started DOUBLE PRECISION,
    percent         INTEGER,
    flag            BOOLEAN,
    commit_sha      TEXT,
    reason          TEXT,
    updated_at      DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS verdicts (
    id          BIGSERIAL PRIMARY KEY,
    ts          DOUBLE PRECISION NOT NULL,
    environment TEXT NOT NULL,
    phase       TEXT,
    step        TEXT,
    percent     INTEGER,
    verdict     TEXT NOT NULL,
    summary     TEXT NOT NULL,
    metrics     JSONB NOT NULL,
    commit_sha  TEXT,
    duration_s  DOUBLE PRECISION,
    readings    JSONB
);
CREATE INDEX IF NOT EXISTS verdicts_env ON verdicts(environment, id);
CREATE TABLE IF NOT EXISTS audit (
    id          BIGSERIAL PRIMARY KEY,
    ts          DOUBLE PRECISION NOT NULL,
    environment TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    detail      JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_env ON audit(environment, id);
CREATE OR REPLACE FUNCTION rollout_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE OR REPLACE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION rollout_audit_append_only();
CREATE OR REPLACE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION rollout_audit_append_only();
CREATE TABLE IF NOT EXISTS locks (
    environment TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    host        TEXT NOT NULL,
    acquired_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS controls (
    environment TEXT PRIMARY KEY,
    paused      BOOLEAN NOT NULL DEFAULT FALSE,
    promote     TEXT,
    updated_at  DOUBLE PRECISION NOT NULL
);
ALTER TABLE verdicts ADD COLUMN IF NOT EXISTS duration_s DOUBLE PRECISION;
ALTER TABLE verdicts ADD COLUMN IF NOT EXISTS readings JSONB;
ALTER TABLE environments ADD COLUMN IF NOT EXISTS run_id TEXT;
ALTER TABLE environments ADD COLUMN IF NOT EXISTS driver TEXT;
ALTER TABLE environments ADD COLUMN IF NOT EXISTS completed_at DOUBLE PRECISION;
ALTER TABLE controls ADD COLUMN IF NOT EXISTS run_id TEXT;
CREATE TABLE IF NOT EXISTS leases (
    environment TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    token       BIGINT NOT NULL,
    expires_at  DOUBLE PRECISION NOT NULL,
    acquired_at DOUBLE PRECISION NOT NULL,
    renewed_at  DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    url          TEXT,
    serves       TEXT NOT NULL,
    started_at   DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    ttl          DOUBLE PRECISION NOT NULL,
    stopping     BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE IF NOT EXISTS run_requests (
    id           BIGSERIAL PRIMARY KEY,
    environment  TEXT NOT NULL,
    options      TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at DOUBLE PRECISION NOT NULL,
    taken_by     TEXT,
    taken_at     DOUBLE PRECISION,
    finished_at  DOUBLE PRECISION,
    outcome      TEXT
);
CREATE INDEX IF NOT EXISTS run_requests_env ON run_requests(environment, id);
CREATE TABLE IF NOT EXISTS rollout_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

#: the schema's version: any change to :data:`SCHEMA` makes a new one (and runs it once)
SCHEMA_VERSION = hashlib.sha256(SCHEMA.encode()).hexdigest()[:16]


#: how long a transaction may sit idle before the server ends its session (ours last milliseconds)
FROZEN_TX_MS = 5000


class PgStateStore(StateRecords):
    """The :class:`~rollout.engine.state.StateStore` interface over PostgreSQL (psycopg 3)."""

    missing = False
    _LEASE_ROW = "SELECT owner, token FROM leases WHERE environment = ? FOR UPDATE"

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    @staticmethod
    def _bool(value: Any) -> Any:
        return bool(value)

    @staticmethod
    def _dump(value: Any, sort_keys: bool) -> Any:
        from psycopg.types.json import Jsonb

        return Jsonb(finite(value), dumps=lambda v: json.dumps(v, default=str, sort_keys=True, allow_nan=False))

    @staticmethod
    def _load(value: Any) -> Any:
        return value  # JSONB comes back decoded

    def __init__(self, url: str, redactor: Redactor | None = None) -> None:
        import psycopg

        if redactor is not None:
            self.redactor = redactor
        self.url = url
        self.path = shown_url(url)
        self._connections = ThreadConnections(self._connect)
        try:
            if not self._schema_current():
                with self._db.transaction():
                    # two processes creating the schema at once would collide: one at a time
                    self._db.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_CLASS,))
                    self._db.execute(SCHEMA)
                    self._db.execute(
                        "INSERT INTO rollout_meta (key, value) VALUES ('schema', %s) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (SCHEMA_VERSION,),
                    )
        except psycopg.Error as exc:
            raise StateError(f"{self.path}: cannot open the state database ({error_text(exc)})") from exc

    def _schema_current(self) -> bool:
        """Is the schema this version's already? Then no DDL runs: DDL takes exclusive locks, and
        agents write all the time (a DDL beside their writes can deadlock)."""
        if self._db.execute("SELECT to_regclass('rollout_meta') AS t").fetchone()["t"] is None:
            return False
        row = self._db.execute("SELECT value FROM rollout_meta WHERE key = 'schema'").fetchone()
        return row is not None and row["value"] == SCHEMA_VERSION

    def _connect(self) -> Any:
        """A connection for the calling thread (the agent works from several)."""
        import psycopg
        from psycopg.rows import dict_row

        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=10,
                # a process frozen inside a transaction (SIGSTOP, a paused VM) would hold its row locks,
                # and every other agent's claim would wait on them: the server ends such a session
                options=f"-c idle_in_transaction_session_timeout={FROZEN_TX_MS}",
            )
        except psycopg.Error as exc:
            raise StateError(f"{self.path}: cannot open the state database ({error_text(exc)})") from exc

    @property
    def _db(self) -> Any:
        return self._connections.get()

    def close(self) -> None:
        self._connections.close()

    def server_time(self, now: float) -> float:
        """The database's clock: agents on machines whose clocks disagree still agree on a lease."""
        return float(self._db.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp()) AS t").fetchone()["t"])

    def in_tx(self, db: Any) -> bool:
        from psycopg.pq import TransactionStatus

        return bool(db.info.transaction_status != TransactionStatus.IDLE)

    @contextmanager
    def tx(self) -> Iterator[Any]:
        with self._db.transaction():
            yield self._db

    def serialize(self, db: Any, key: str) -> None:
        """A transaction-scoped advisory lock on ``key`` (see :meth:`StateRecords.serialize`)."""
        db.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, f"rollout serialize {key}"))

    # --- the writer lock -------------------------------------------------------------------------

    def acquire(self, environment: str, now: float) -> str | None:
        """Take the writer lock of ``environment`` for this connection's life.

        Returns a note when the previous holder's connection is gone (it crashed); raises
        :class:`StateError` naming the holder while it lives."""
        got = self._db.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS got", (LOCK_CLASS, environment)
        ).fetchone()["got"]
        row = self._db.execute("SELECT * FROM locks WHERE environment = %s", (environment,)).fetchone()
        if not got:
            who = f"{row['owner']} (pid {row['pid']} on {row['host']})" if row else "another process"
            raise StateError(
                f"environment {environment} is being advanced by {who}; wait for it to finish, or run "
                f"`rollout rollback --env {environment}` to stop the feature now"
            )
        me, pid, host = actor(), os.getpid(), socket.gethostname()
        note = None
        if row is not None and not (row["pid"] == pid and row["host"] == host):
            note = f"took over the lock of pid {row['pid']} on {row['host']} ({row['owner']}): its connection is gone"
        with self._db.transaction():
            self._db.execute("DELETE FROM locks WHERE environment = %s", (environment,))
            self._db.execute(
                "INSERT INTO locks (environment, owner, pid, host, acquired_at) VALUES (%s, %s, %s, %s, %s)",
                (environment, me, pid, host, now),
            )
        return note

    def release(self, environment: str) -> None:
        self._db.execute(
            "DELETE FROM locks WHERE environment = %s AND pid = %s AND host = %s",
            (environment, os.getpid(), socket.gethostname()),
        )
        self._db.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_CLASS, environment))

    def holder(self, environment: str) -> dict[str, Any] | None:
        """Who holds the lock, if anyone really does (a row whose connection is gone is no holder)."""
        row = self._db.execute(
            "SELECT l.* FROM locks l WHERE l.environment = %s AND EXISTS (SELECT 1 FROM pg_locks p WHERE "
            "p.locktype = 'advisory' AND p.granted AND p.classid = %s::oid AND p.objsubid = 2 AND "
            "p.objid = ((hashtext(%s)::bigint + 4294967296) %% 4294967296)::text::oid)",
            (environment, LOCK_CLASS, environment),
        ).fetchone()
        return dict(row) if row else None
