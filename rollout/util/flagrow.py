"""The fleet's flag row in PostgreSQL: the protocol between the engine's ``postgres`` flag backend
(which writes it) and every service replica's flag follower (which obeys it). One row per
environment, pushed with ``LISTEN/NOTIFY`` on :data:`CHANNEL`; one row per replica saying which
flag version it applied, and when it last did.
"""

from __future__ import annotations

from typing import Any

from rollout.util.errors import ConfigError
from rollout.util.pg import LOCK_CLASS, error_text, shown_url

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


def connect(url: str) -> Any:
    """A connection to the flag database, with the tables made if missing; a ConfigError (one line,
    password hidden) when it cannot be opened."""
    import psycopg
    from psycopg.rows import dict_row

    try:
        conn = psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, 1)", (LOCK_CLASS,))
            conn.execute(SCHEMA)
    except psycopg.Error as exc:
        raise ConfigError(f"{shown_url(url)}: cannot open the flag database ({error_text(exc)})") from exc
    return conn
