"""Handing a run to the always-on agents, through the state store they share.

Each agent keeps a row in ``agents`` (who, where, which environments it serves, a heartbeat).
``rollout advance`` on an environment a live agent serves queues a row in ``run_requests``; an
agent takes it (one statement: only one can), drives the run to its end and writes the outcome
into the row; the terminal follows the run from the record meanwhile (:mod:`rollout.engine.follow`)
and exits with the outcome's code. A request nobody takes in time is cancelled by the terminal,
which then runs the advance itself, as when no agent serves the environment.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Any

from rollout.engine.state import StateRecords

#: an agent whose heartbeat is older than this many of its own lease time-to-lives is gone
HEARTBEAT_TTLS = 2.0


@dataclass(frozen=True)
class AgentRow:
    """An agent as it registered itself."""

    id: str
    host: str
    pid: int
    url: str | None
    serves: tuple[str, ...]
    started_at: float
    heartbeat_at: float
    ttl: float
    stopping: bool


def register(state: StateRecords, agent_id: str, url: str | None, serves: list[str], ttl: float, now: float) -> None:
    """Add (or refresh) ``agent_id``'s row: alive now, serving ``serves``."""
    at = state.server_time(now)
    state.execute(
        "INSERT INTO agents (id, host, pid, url, serves, started_at, heartbeat_at, ttl, stopping) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, "
        "serves = excluded.serves, url = excluded.url, stopping = excluded.stopping",
        (agent_id, socket.gethostname(), os.getpid(), url, json.dumps(sorted(serves)), at, at, ttl, state._bool(False)),
    )


def heartbeat(state: StateRecords, agent_id: str, now: float, stopping: bool = False) -> None:
    state.execute(
        "UPDATE agents SET heartbeat_at = ?, stopping = ? WHERE id = ?",
        (state.server_time(now), state._bool(stopping), agent_id),
    )


def unregister(state: StateRecords, agent_id: str) -> None:
    """An agent that stopped cleanly leaves the list at once."""
    state.execute("DELETE FROM agents WHERE id = ?", (agent_id,))


def live_agents(state: StateRecords, now: float) -> list[AgentRow]:
    """The agents whose heartbeat is fresh, stopping ones excluded."""
    at = state.server_time(now)
    rows = state.execute("SELECT * FROM agents ORDER BY id").fetchall()
    found = []
    for r in rows:
        if float(r["heartbeat_at"]) + HEARTBEAT_TTLS * float(r["ttl"]) < at or bool(r["stopping"]):
            continue
        found.append(
            AgentRow(
                r["id"],
                r["host"],
                int(r["pid"]),
                r["url"],
                tuple(json.loads(r["serves"])),
                float(r["started_at"]),
                float(r["heartbeat_at"]),
                float(r["ttl"]),
                bool(r["stopping"]),
            )
        )
    return found


def serving(state: StateRecords, environment: str, now: float) -> list[AgentRow]:
    """The live agents that serve ``environment``."""
    return [a for a in live_agents(state, now) if environment in a.serves]


# --- run requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    id: int
    environment: str
    options: dict[str, Any]
    requested_by: str
    requested_at: float
    taken_by: str | None
    taken_at: float | None
    finished_at: float | None
    outcome: dict[str, Any] | None

    @classmethod
    def of(cls, row: Any) -> RunRequest:
        return cls(
            int(row["id"]),
            row["environment"],
            json.loads(row["options"]),
            row["requested_by"],
            float(row["requested_at"]),
            row["taken_by"],
            row["taken_at"],
            row["finished_at"],
            json.loads(row["outcome"]) if row["outcome"] else None,
        )


def request_run(state: StateRecords, environment: str, options: dict[str, Any], who: str, now: float) -> int:
    """Queue an advance of ``environment`` for the agents; returns the request's id."""
    row = state.execute(
        "INSERT INTO run_requests (environment, options, requested_by, requested_at) VALUES (?, ?, ?, ?) RETURNING id",
        (environment, json.dumps(options, sort_keys=True), state.redactor.text(who), now),
    ).fetchone()
    return int(row["id"])


def get(state: StateRecords, request_id: int) -> RunRequest | None:
    row = state.execute("SELECT * FROM run_requests WHERE id = ?", (request_id,)).fetchone()
    return RunRequest.of(row) if row is not None else None


def pending(state: StateRecords, environments: list[str] | None = None) -> list[RunRequest]:
    """Requests not taken yet (oldest first), of ``environments`` if given."""
    rows = state.execute(
        "SELECT * FROM run_requests WHERE taken_by IS NULL AND finished_at IS NULL ORDER BY id"
    ).fetchall()
    found = [RunRequest.of(r) for r in rows]
    return [r for r in found if environments is None or r.environment in environments]


def unfinished(state: StateRecords) -> list[RunRequest]:
    """Requests taken and not finished (oldest first): the runs agents drive, or were driving when
    they stopped (one waiting for its start or its wave, not begun yet, among them)."""
    rows = state.execute(
        "SELECT * FROM run_requests WHERE taken_by IS NOT NULL AND finished_at IS NULL ORDER BY id"
    ).fetchall()
    return [RunRequest.of(r) for r in rows]


def running(state: StateRecords, environment: str) -> RunRequest | None:
    """The request of ``environment`` taken and not finished (the run an agent drives), if any."""
    row = state.execute(
        "SELECT * FROM run_requests WHERE environment = ? AND taken_by IS NOT NULL AND finished_at IS NULL "
        "ORDER BY id DESC LIMIT 1",
        (environment,),
    ).fetchone()
    return RunRequest.of(row) if row is not None else None


def take(state: StateRecords, request_id: int, agent_id: str, now: float, db: Any = None) -> bool:
    """``agent_id`` takes the request (True), unless someone took or cancelled it first (False)."""
    row = state.execute(
        "UPDATE run_requests SET taken_by = ?, taken_at = ? WHERE id = ? AND taken_by IS NULL AND finished_at IS NULL "
        "RETURNING id",
        (agent_id, now, request_id),
        db,
    ).fetchone()
    return row is not None


def adopt(state: StateRecords, request_id: int, agent_id: str, now: float) -> None:
    """An agent that took an environment over takes over its running request too (it writes the outcome)."""
    state.execute(
        "UPDATE run_requests SET taken_by = ?, taken_at = ? WHERE id = ? AND finished_at IS NULL",
        (agent_id, now, request_id),
    )


def finish(state: StateRecords, request_id: int, outcome: dict[str, Any], now: float, db: Any = None) -> None:
    """Record how the requested run ended (the following terminal prints it and exits with its code)."""
    state.execute(
        "UPDATE run_requests SET finished_at = ?, outcome = ? WHERE id = ? AND finished_at IS NULL",
        (now, json.dumps(state.redactor.value(outcome), default=str, sort_keys=True), request_id),
        db,
    )


def cancel(state: StateRecords, request_id: int, now: float) -> bool:
    """Withdraw a request nobody took (True), unless an agent took it meanwhile (False)."""
    row = state.execute(
        "UPDATE run_requests SET finished_at = ?, outcome = ? WHERE id = ? AND taken_by IS NULL AND "
        "finished_at IS NULL RETURNING id",
        (now, json.dumps({"status": "cancelled", "exit_code": 3, "message": "no agent took the run"}), request_id),
    ).fetchone()
    return row is not None
