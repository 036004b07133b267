"""Which store a ``--db`` names: the SQLite file of one service, or the PostgreSQL database a fleet
of replicas shares."""

from __future__ import annotations

from pathlib import Path

from rollout.booking.service.pgstore import PostgresStore
from rollout.booking.service.store import SqliteStore, Store


def open_store(target: Path | str, replica_id: str) -> Store:
    """The store for ``--db``: a ``postgresql://`` URL (shared by a fleet) or a SQLite file path."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresStore(text, replica_id)
    return SqliteStore(text, replica_id)
