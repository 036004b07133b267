"""The service as a fleet on one PostgreSQL outbox, measured in one run on this machine.

(a) drain rate: a backlog of bookings released at once (one UPDATE makes every row due) and drained by
    1, 2 and 3 replicas on PostgreSQL, and by 1 replica on SQLite, side by side; notifications per
    second from the sandbox's own receive times (first to last message), and each replica's share.
    One replica runs ``--pairs`` times on each store, SQLite then PostgreSQL one after the other:
    this machine's pace drifts by a tenth over minutes, so the ratio is taken within each pair and
    the median of the pairs' ratios is the figure.
(c) kill -9 under load: 3 replicas on one database, bookings posted at a fixed rate over the live
    replicas (a load balancer's view), the sandbox answering in ``--latency`` ms so sends are in
    flight; one replica is killed with SIGKILL a third of the way through. Counted afterwards from
    the database and the sandbox: bookings committed, lost (committed but never ended, or accepted
    but missing), sent twice, recovered as ``unconfirmed`` (sent to the fallback, never resent).

Every process is real (sandbox, replicas, a PostgreSQL started here in a temporary folder); the
load generator is this process; everything is on 127.0.0.1.

Usage: python benchmarks/fleet_outbox.py [--backlog 10000] [--pairs 3] [--bookings 2000] [--rate 200]
Needs the PostgreSQL server binaries (Debian package ``postgresql``) and the test extras installed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._procs import Proc, sandbox_client, start_sandbox, start_service, wait_for_messages
from rollout.booking.service.store import BOOKING_FIELDS, Store
from rollout.booking.service.stores import open_store
from rollout.targets.embedded.bookings import synthetic_booking
from tests.support.postgres import Postgres

NEVER = 1e12


def fill_backlog(store: Store, count: int) -> None:
    """``count`` bookings with notifications not yet due, written straight into the store."""
    now = time.time()
    with store._tx() as db:
        db.executemany(
            f"INSERT INTO bookings ({', '.join(BOOKING_FIELDS)}, created_at) "
            f"VALUES ({', '.join('?' * len(BOOKING_FIELDS))}, ?)",
            [
                [b[f] for f in BOOKING_FIELDS] + [now]
                for b in (synthetic_booking(f"B-{i}", f"c{i}", amount="1500") for i in range(count))
            ],
        )
        db.execute(
            "INSERT INTO notifications (booking_id, status, next_attempt_at, created_at, updated_at) "
            "SELECT id, 'pending', ?, ?, ? FROM bookings",
            (NEVER, now, now),
        )


def measure_drain(folder: Path, db: str, replicas: int, backlog: int, label: str) -> float:
    sandbox = start_sandbox(folder)
    store = open_store(db, "benchmark")
    fill_backlog(store, backlog)
    procs: list[Proc] = []
    try:
        for i in range(1, replicas + 1):
            (folder / f"r{i}").mkdir()
            procs.append(
                start_service(folder / f"r{i}", sandbox.url, db=db, replica_id=f"r{i}", WHATSAPP_MAX_CONCURRENCY="128")[
                    0
                ]
            )
        with store._tx() as tx:  # every replica is up: release the whole backlog at once
            tx.execute("UPDATE notifications SET next_attempt_at = 0")
        with sandbox_client(sandbox.url) as client:
            messages = wait_for_messages(client, backlog, 180)
        stamps = sorted(m["ts"] for m in messages)
        rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        shares = store._all(
            "SELECT claimed_by AS r, COUNT(*) AS n FROM notifications GROUP BY claimed_by ORDER BY claimed_by"
        )
        refs = Counter(m["parameters"][5] for m in messages)
        twice = sum(1 for n in refs.values() if n > 1)
        shown = ", ".join(f"{r['r']}: {r['n']}" for r in shares)
        print(
            f"(a) {label:<24} {len(messages):>6} sent in {stamps[-1] - stamps[0]:5.1f} s = {rate:6.0f}/s   "
            f"shares {shown}   sent twice: {twice}",
            flush=True,
        )
        return rate
    finally:
        for proc in procs:
            proc.stop()
        store.close()
        sandbox.stop()


async def post_bookings(
    urls: dict[str, str], live: list[str], total: int, rate: float, kill_at: int, kill: object
) -> tuple[list[str], list[str]]:
    """POST ``total`` bookings at ``rate``/s round-robin over ``live``; call ``kill`` after ``kill_at``."""
    accepted: list[str] = []
    refused: list[str] = []
    gate = asyncio.Semaphore(64)
    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=64)) as http:

        async def one(i: int) -> None:
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if i == kill_at:
                kill()
            ref = f"K-{i}"
            async with gate:
                try:
                    response = await http.post(
                        f"{urls[live[i % len(live)]]}/api/bookings", json=synthetic_booking(ref, f"c{i}", amount="1500")
                    )
                    (accepted if response.status_code == 201 else refused).append(ref)
                except httpx.HTTPError:
                    refused.append(ref)

        await asyncio.gather(*(one(i) for i in range(total)))
    return accepted, refused


def measure_kill(folder: Path, db: str, total: int, rate: float, latency_ms: float) -> None:
    sandbox = start_sandbox(folder)
    procs: dict[str, Proc] = {}
    store = open_store(db, "benchmark")
    try:
        with sandbox_client(sandbox.url) as client:
            client.patch("/sandbox/faults", json={"latency_ms": latency_ms}).raise_for_status()
        for name in ("r1", "r2", "r3"):
            (folder / name).mkdir()
            procs[name] = start_service(folder / name, sandbox.url, db=db, replica_id=name, WHATSAPP_TIMEOUT_MS="2000")[
                0
            ]
        live = list(procs)
        in_flight_at_kill: list[int] = []
        killed_at: list[float] = []

        def kill() -> None:
            in_flight_at_kill.append(
                store._value("SELECT COUNT(*) AS n FROM notifications WHERE status = 'sending' AND claimed_by = 'r2'")
            )
            procs["r2"].proc.send_signal(signal.SIGKILL)
            killed_at.append(time.monotonic())
            live.remove("r2")

        accepted, refused = asyncio.run(
            post_bookings({n: p.url for n, p in procs.items()}, live, total, rate, total // 3, kill)
        )
        deadline = time.monotonic() + 120
        while (
            store._value("SELECT COUNT(*) AS n FROM notifications WHERE status IN ('pending', 'sending')")
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        ended = time.monotonic() - killed_at[0]
        rows = store._all(
            "SELECT b.booking_ref AS ref, n.status, n.reason FROM notifications n "
            "JOIN bookings b ON b.id = n.booking_id"
        )
        committed = {r["ref"] for r in rows}
        open_rows = [r for r in rows if r["status"] in ("pending", "sending")]
        missing = [ref for ref in accepted if ref not in committed]
        with sandbox_client(sandbox.url) as client:
            sent = Counter(m["parameters"][5] for m in client.get("/sandbox/messages").json()["messages"])
        unconfirmed = [r for r in rows if r["reason"] == "unconfirmed"]
        fallbacks = store._value("SELECT COUNT(*) AS n FROM fallback_outbox")
        print(
            f"(c) {total} bookings at {rate:.0f}/s over 3 replicas, r2 killed (SIGKILL) after {total // 3} with "
            f"{in_flight_at_kill[0]} sends in flight",
            flush=True,
        )
        print(
            f"    accepted {len(accepted)}, refused {len(refused)} (requests to r2 as it died), committed "
            f"{len(committed)}; sent {sum(1 for r in rows if r['status'] == 'sent')}, unconfirmed "
            f"{len(unconfirmed)} (all to the fallback: {fallbacks}); every row ended {ended:.1f} s after the kill"
        )
        print(
            f"    lost: {len(open_rows) + len(missing)}   sent twice: {sum(1 for n in sent.values() if n > 1)}",
            flush=True,
        )
    finally:
        for proc in procs.values():
            if proc.proc.poll() is None:
                proc.stop()
        store.close()
        sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=3, help="one-replica drains on each store, side by side")
    parser.add_argument("--bookings", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--latency", type=float, default=100, help="sandbox latency in ms for (c)")
    args = parser.parse_args()
    pg = Postgres()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            pairs = [(("1 replica, SQLite", None, 1), ("1 replica, PostgreSQL", "pg", 1))] * args.pairs
            runs = [
                *(run for pair in pairs for run in pair),
                ("2 replicas, PostgreSQL", "pg", 2),
                ("3 replicas, PostgreSQL", "pg", 3),
            ]
            rates = []
            for n, (label, kind, replicas) in enumerate(runs):
                folder = base / f"drain-{n}"
                folder.mkdir()
                db = pg.database() if kind else str(folder / "service.db")
                rates.append(measure_drain(folder, db, replicas, args.backlog, label))
            ratios = [
                pg_rate / lite
                for lite, pg_rate in zip(rates[0 : 2 * args.pairs : 2], rates[1 : 2 * args.pairs : 2], strict=True)
            ]
            if ratios:
                shown = ", ".join(f"{r:.2f}" for r in ratios)
                print(
                    f"(a) 1 replica, PostgreSQL / SQLite, pair by pair: {shown}; median {statistics.median(ratios):.2f}"
                )
            (base / "kill").mkdir()
            measure_kill(base / "kill", pg.database(), args.bookings, args.rate, args.latency)
    finally:
        pg.close()


if __name__ == "__main__":
    main()
