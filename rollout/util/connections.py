"""One database connection per thread, all closed together.

The engine's state stores are used from one thread by every command, and from a pool of worker
threads by the always-on agent; a connection (SQLite's, or a psycopg one inside a transaction) must
not be shared between threads, so each thread gets its own on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class ThreadConnections:
    """Connections made by ``connect``, one per calling thread."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def get(self) -> Any:
        """The calling thread's connection (made now if it has none)."""
        db = getattr(self._local, "db", None)
        # a session the server ended (a transaction left idle too long): the next use opens a new one
        if db is None or getattr(db, "closed", False) is True:
            db = self._connect()
            self._local.db = db
            with self._lock:
                if db not in self._all:
                    self._all.append(db)
        return db

    def close(self) -> None:
        """Close every connection made (a closed store opens no new one)."""
        with self._lock:
            connections, self._all = self._all, []
        for db in connections:
            try:
                db.close()
            except Exception:  # noqa: BLE001 - closing is best effort; the process may be ending
                pass
        self._local = threading.local()
