"""The service's store on PostgreSQL (psycopg 3), shared by every replica of a fleet.

Same schema and SQL as SQLite (:mod:`rollout.booking.service.store`); this module supplies the
connection, the transactions, ``%s`` placeholders and the row locks that let replicas share one outbox.
The sender's two hot paths, a claim and a write-back of results, are one statement each here (one
round trip instead of four and five): a local round trip costs about as much as the SQL itself.
The outbox makes them (``claim_due_async``, ``apply_results_async``) on a connection of its own
through psycopg's asyncio interface, so the event loop goes on with the sends in flight while the
server works (SQLite's work is in-process, this is a wait): that wait was the last tenth between one
replica on PostgreSQL and one on SQLite. The plain ``claim_due`` and ``apply_results``, which only
tools and tests call, run the shared SQL of :class:`Store` with this store's row locks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from rollout.booking.service import schema
from rollout.booking.service.schema import StorageError
from rollout.booking.service.store import CLAIMED_FIELDS, OUTCOME_EVENTS, Result, Store
from rollout.util.pg import LOCK_CLASS, error_text, shown_url

#: second key of the advisory lock that serialises schema migrations of replicas starting together
MIGRATION_LOCK = 2


#: :meth:`PostgresStore.apply_results_async` as one statement: the results (``r``) are written where this
#: replica's claim still holds (``held``), with their fallbacks; the events are inserted but for the
#: outcome events of results whose claim was recovered meanwhile (``stale``), whose ids it returns
APPLY_RESULTS = """
WITH r AS (
    SELECT * FROM unnest(?::bigint[], ?::text[], ?::text[], ?::double precision[], ?::text[], ?::text[],
                         ?::text[], ?::boolean[])
        AS r(booking_id, status, reason, next_attempt_at, message_id, wamid, last_error, fallback)
), held AS (
    UPDATE notifications n SET status = r.status, reason = r.reason,
        next_attempt_at = COALESCE(r.next_attempt_at, n.next_attempt_at),
        message_id = COALESCE(r.message_id, n.message_id), wamid = COALESCE(r.wamid, n.wamid),
        last_error = COALESCE(r.last_error, n.last_error), updated_at = ?
    FROM r WHERE n.booking_id = r.booking_id AND n.status = 'sending' AND n.claimed_by = ?
    RETURNING n.booking_id
), stale AS (
    SELECT booking_id FROM r WHERE booking_id NOT IN (SELECT booking_id FROM held)
), fallbacks AS (
    INSERT INTO fallback_outbox (booking_id, reason, created_at)
    SELECT r.booking_id, COALESCE(NULLIF(r.reason, ''), 'failed'), ? FROM r JOIN held USING (booking_id)
    WHERE r.fallback
    ON CONFLICT (booking_id) DO NOTHING
), logged AS (
    INSERT INTO events (ts, kind, reason, latency_ms, booking_id)
    SELECT e.ts, e.kind, e.reason, e.latency_ms, e.booking_id
    FROM unnest(?::double precision[], ?::text[], ?::text[], ?::double precision[], ?::bigint[])
        AS e(ts, kind, reason, latency_ms, booking_id)
    WHERE NOT (e.kind = ANY(?::text[]) AND EXISTS (SELECT 1 FROM stale s WHERE s.booking_id = e.booking_id))
)
SELECT booking_id FROM stale
"""


#: :meth:`PostgresStore._claim_async` as one statement
CLAIM_DUE = (
    "WITH picked AS (SELECT booking_id FROM notifications WHERE status='pending' AND next_attempt_at <= ? "
    "ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED), "
    "claimed AS (UPDATE notifications n SET status='sending', attempts=n.attempts+1, updated_at=?, "
    "claimed_by=?, claimed_at=? FROM picked WHERE n.booking_id = picked.booking_id "
    "RETURNING n.booking_id, n.attempts, n.reason) "
    f"SELECT c.booking_id, c.attempts, c.reason, {CLAIMED_FIELDS} FROM claimed c "
    "JOIN bookings b ON b.id = c.booking_id LEFT JOIN preferences p ON p.customer_id = b.customer_id"
)


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
        #: the outbox's own connection, used from the event loop without blocking it (opened on first use)
        self._outbox_db: psycopg.AsyncConnection[dict[str, Any]] | None = None
        self._migrate()

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        try:
            return psycopg.connect(self.url, autocommit=True, row_factory=dict_row, connect_timeout=10)
        except psycopg.Error as exc:
            raise self._unopened(exc) from exc

    def _unopened(self, exc: psycopg.Error) -> StorageError:
        return StorageError(f"{self.path}: cannot open the service database ({error_text(exc)})")

    async def _outbox_conn(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._outbox_db is None or self._outbox_db.closed or self._outbox_db.broken:
            try:
                self._outbox_db = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, row_factory=dict_row, connect_timeout=10
                )
            except psycopg.Error as exc:
                raise self._unopened(exc) from exc
        return self._outbox_db

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

    async def aclose(self) -> None:
        if self._outbox_db is not None:
            await self._outbox_db.close()
        self.close()

    async def apply_results_async(self, results: Sequence[Result], events: Iterable[tuple], now: float) -> list[int]:
        """As :meth:`Store.apply_results`, in one statement (one round trip, atomic on its own)
        instead of five: a sender on PostgreSQL spends its time on the provider, not on the wire."""
        events = list(events)
        if not results and not events:
            return []
        # events are (ts, kind, reason, latency_ms, booking_id): one array per column
        columns: list[list[Any]] = [list(c) for c in zip(*events, strict=True)] if events else [[]] * 5
        stale = await self._all_async(
            APPLY_RESULTS,
            (
                [r.booking_id for r in results],
                [r.status for r in results],
                [r.reason for r in results],
                [r.next_attempt_at for r in results],
                [r.message_id for r in results],
                [r.wamid for r in results],
                [r.error for r in results],
                [r.fallback for r in results],
                now,
                self.replica_id,
                now,
                *columns,
                sorted(OUTCOME_EVENTS),
            ),
        )
        return sorted(row["booking_id"] for row in stale)

    async def _claim_async(self, now: float, limit: int) -> list[dict[str, Any]]:
        """One statement, so one round trip, committed on its own: pick, lock, mark and read the
        claimed rows with their bookings (SQLite does this in two, in-process)."""
        return await self._all_async(CLAIM_DUE, (now, limit, now, self.replica_id, now))

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

    async def _all_async(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            cursor = await (await self._outbox_conn()).execute(_sql(sql), params)
            return await cursor.fetchall()
        except psycopg.OperationalError as exc:
            raise StorageError(f"{self.path}: {error_text(exc)}") from exc
