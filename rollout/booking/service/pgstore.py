"""The service's store on PostgreSQL (psycopg 3), shared by every replica of a fleet.

Same schema and SQL as SQLite (:mod:`rollout.service.store`); this module supplies the connection,
the transactions, ``%s`` placeholders and the row locks that let replicas share one outbox.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from rollout.booking.service import schema
from rollout.booking.service.schema import StorageError
from rollout.booking.service.store import Store
from rollout.util.pg import LOCK_CLASS, error_text, shown_url

#: second key of the advisory lock that serialises schema migrations of replicas starting together
MIGRATION_LOCK = 2


def _sql(sql: str) -> str:
    return sql.replace("?", "%s")


class _Tx:
    """The statements of one transaction, with SQLite's ``?`` placeholders."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._cur = conn.cursor(row_factory=tuple_row)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self._cur.execute(_sql(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            self._cur.executemany(_sql(sql), rows)


class PostgresStore(Store):
    """Many replicas on one database; see the module docstring."""

    shared = True
    kind = "postgresql"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    for_update = " FOR UPDATE"
    _duplicate = (psycopg.errors.UniqueViolation,)

    def __init__(self, url: str, replica_id: str) -> None:
        super().__init__(replica_id)
        self.url, self.path = url, shown_url(url)
        self._db = self._connect()
        self._migrate()

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        try:
            return psycopg.connect(self.url, autocommit=True, row_factory=dict_row, connect_timeout=10)
        except psycopg.Error as exc:
            raise StorageError(f"{self.path}: cannot open the service database ({error_text(exc)})") from exc

    def _conn(self) -> psycopg.Connection[dict[str, Any]]:
        """The connection, opened again if the server dropped it (a restart of PostgreSQL)."""
        if self._db.closed or self._db.broken:
            self._db = self._connect()
        return self._db

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(?, ?)", (LOCK_CLASS, MIGRATION_LOCK))
            db.execute(schema.VERSION_TABLE)
            row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
            found = (row[0] if row else 0) or 0
            schema.migrate(db, found, schema.POSTGRES, self.path)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[_Tx]:
        try:
            conn = self._conn()
            with conn.transaction():
                yield _Tx(conn)
        except psycopg.OperationalError as exc:
            raise StorageError(f"{self.path}: {error_text(exc)}") from exc

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            return self._conn().execute(_sql(sql), params).fetchall()
        except psycopg.OperationalError as exc:
            raise StorageError(f"{self.path}: {error_text(exc)}") from exc
