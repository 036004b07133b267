"""The engine's state in PostgreSQL (``--state postgresql://...``): the same record as the SQLite
store, shared by every machine that advances, watches or rolls back the same rollout.

The writer lock is a session advisory lock held by the advancing process's connection: when the
process dies (even by ``kill -9``) the server drops the connection and the lock with it, so the next
``advance`` takes over at once. A ``locks`` row says who holds it, for people; the advisory lock is
the truth. The audit log is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE on it. The
kill switch never waits for the writer lock, as with SQLite.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rollout.engine.state import IDLE, EnvState, actor
from rollout.errors import StateError

#: the first key of every rollout advisory lock (the second is the environment's hash)
LOCK_CLASS = 0x726F6C6C & 0x7FFFFFFF

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
    commit_sha  TEXT
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
"""


def error_text(exc: BaseException) -> str:
    """A driver error on one line (libpq's messages span several), bounded."""
    return " ".join(str(exc).split())[:300]


def shown_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _json(value: Any) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(value, dumps=lambda v: json.dumps(v, default=str, sort_keys=True))


class PgStateStore:
    """The :class:`~rollout.engine.state.StateStore` interface over PostgreSQL (psycopg 3)."""

    missing = False

    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg.rows import dict_row

        self.url = url
        self.path = shown_url(url)
        try:
            self._db = psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10)
            with self._db.transaction():
                # two processes creating the schema at once would collide: one at a time
                self._db.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_CLASS,))
                self._db.execute(SCHEMA)
        except psycopg.Error as exc:
            raise StateError(f"{self.path}: cannot open the state database ({error_text(exc)})") from exc

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def tx(self) -> Iterator[Any]:
        with self._db.transaction():
            yield self._db

    # --- environments ----------------------------------------------------------------------------

    def get(self, name: str) -> EnvState:
        row = self._db.execute("SELECT * FROM environments WHERE name = %s", (name,)).fetchone()
        if row is None:
            return EnvState(name, IDLE, None, 0, 0, False, None, None, None, None, None, 0.0)
        return EnvState(**row)

    def all(self) -> list[EnvState]:
        names = [r["name"] for r in self._db.execute("SELECT name FROM environments ORDER BY name")]
        return [self.get(n) for n in names]

    def update(self, name: str, now: float, db: Any = None, **fields: Any) -> None:
        """Set ``fields`` of environment ``name`` (created if new)."""
        for key in ("ramp_applied", "flag"):
            if key in fields and fields[key] is not None:
                fields[key] = bool(fields[key])
        conn = db or self._db
        conn.execute("INSERT INTO environments (name, updated_at) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                     (name, now))
        if fields:
            assignments = ", ".join(f"{k} = %s" for k in fields)
            conn.execute(f"UPDATE environments SET {assignments}, updated_at = %s WHERE name = %s",
                         [*fields.values(), now, name])

    # --- audit and verdicts ----------------------------------------------------------------------

    def audit(self, environment: str, action: str, now: float, who: str | None = None, db: Any = None,
              **detail: Any) -> None:
        (db or self._db).execute(
            "INSERT INTO audit (ts, environment, actor, action, detail) VALUES (%s, %s, %s, %s, %s)",
            (now, environment, who or actor(), action, _json(detail)))

    def audit_log(self, environment: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        query = "SELECT * FROM audit" + (" WHERE environment = %s" if environment else "") + \
            " ORDER BY id DESC LIMIT %s"
        rows = self._db.execute(query, (environment, limit) if environment else (limit,)).fetchall()
        return [dict(r) for r in reversed(rows)]

    def record_verdict(self, environment: str, now: float, phase: str | None, step: str | None,
                       percent: int | None, verdict: str, summary: str, metrics: list[dict[str, Any]],
                       commit_sha: str | None = None) -> None:
        self._db.execute(
            "INSERT INTO verdicts (ts, environment, phase, step, percent, verdict, summary, metrics, commit_sha) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (now, environment, phase, step, percent, verdict, summary, _json(metrics), commit_sha))

    def verdicts(self, environment: str, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM verdicts WHERE environment = %s ORDER BY id DESC LIMIT %s",
                                (environment, limit)).fetchall()
        return [dict(r) for r in reversed(rows)]

    # --- the writer lock -------------------------------------------------------------------------

    def acquire(self, environment: str, now: float) -> str | None:
        """Take the writer lock of ``environment`` for this connection's life.

        Returns a note when the previous holder's connection is gone (it crashed); raises
        :class:`StateError` naming the holder while it lives."""
        got = self._db.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS got",
                               (LOCK_CLASS, environment)).fetchone()["got"]
        row = self._db.execute("SELECT * FROM locks WHERE environment = %s", (environment,)).fetchone()
        if not got:
            who = f"{row['owner']} (pid {row['pid']} on {row['host']})" if row else "another process"
            raise StateError(f"environment {environment} is being advanced by {who}; wait for it to finish, or run "
                             f"`rollout rollback --env {environment}` to stop the feature now")
        me, pid, host = actor(), os.getpid(), socket.gethostname()
        note = None
        if row is not None and not (row["pid"] == pid and row["host"] == host):
            note = f"took over the lock of pid {row['pid']} on {row['host']} ({row['owner']}): its connection is gone"
        with self._db.transaction():
            self._db.execute("DELETE FROM locks WHERE environment = %s", (environment,))
            self._db.execute("INSERT INTO locks (environment, owner, pid, host, acquired_at) VALUES (%s, %s, %s, %s, %s)",
                             (environment, me, pid, host, now))
        return note

    def release(self, environment: str) -> None:
        self._db.execute("DELETE FROM locks WHERE environment = %s AND pid = %s AND host = %s",
                         (environment, os.getpid(), socket.gethostname()))
        self._db.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_CLASS, environment))

    def holder(self, environment: str) -> dict[str, Any] | None:
        """Who holds the lock, if anyone really does (a row whose connection is gone is no holder)."""
        row = self._db.execute(
            "SELECT l.* FROM locks l WHERE l.environment = %s AND EXISTS (SELECT 1 FROM pg_locks p WHERE "
            "p.locktype = 'advisory' AND p.granted AND p.classid = %s::oid AND p.objsubid = 2 AND "
            "p.objid = ((hashtext(%s)::bigint + 4294967296) %% 4294967296)::text::oid)",
            (environment, LOCK_CLASS, environment)).fetchone()
        return dict(row) if row else None
