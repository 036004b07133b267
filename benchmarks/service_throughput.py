"""Issue 2's figures, measured in one run on this machine.

(a) the booking intake under load, posted by ``wrk`` (a C load generator, so the client is not
    the limit) with unique bookings:
      a1. accepted bookings/s and request latency with WhatsApp off and on for everyone, 64
          connections, in alternating rounds (a fresh sandbox and service each), and whether every
          booking accepted with WhatsApp on was sent (once) and how long the sender took to catch up;
      a2. sender ceiling: a backlog of bookings drained by the outbox alone;
      a3. 256 connections with WhatsApp on: the tail, timeouts, 503s.
(b) p99 booking-request latency with WhatsApp on and the provider hanging, divided by the same
    with WhatsApp off, measured in alternating blocks on one service.

Usage: python benchmarks/service_throughput.py [--seconds 8] [--rounds 5]
Sandbox, service and this load generator are three processes; everything is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _procs import sandbox_client, start_sandbox, start_service, wait_for_messages

from rollout.targets.embedded.bookings import synthetic_booking
from rollout.util.envfile import read_env_file, write_env_file
from rollout.util.numbers import percentile

WRK_SCRIPT = Path(__file__).parent / "wrk_bookings.lua"


def wrk(url: str, connections: int, seconds: float, prefix: str) -> dict[str, float]:
    """``wrk`` posting unique bookings for ``seconds``: its RESULT line as numbers."""
    if shutil.which("wrk") is None:
        sys.exit(
            "service_throughput: wrk is not installed (scripts/install-test-deps installs it: apt-get install wrk)"
        )
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "5s",
            "-s",
            str(WRK_SCRIPT),
            url,
            "--",
            prefix,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result = {k: float(v) for k, v in (part.split("=") for part in line.split()[1:])}
    return result


def settled_count(db_path: Path, quiet_s: float = 0.5) -> int:
    """The number of bookings in ``db_path`` once it has not changed for ``quiet_s``."""
    last, since = -1, time.monotonic()
    while True:
        with sqlite3.connect(db_path) as db:
            count = db.execute("SELECT COUNT(*) FROM bookings").fetchone()[0]
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return int(count)
        time.sleep(0.1)


def intake_run(folder: Path, enabled: bool, connections: int, seconds: float, prefix: str) -> dict[str, float]:
    """A fresh sandbox and service (SQLite), WhatsApp on for everyone or off, ``wrk`` for ``seconds``;
    with WhatsApp on, waits for the outbox to send every accepted booking and times the catch-up."""
    folder.mkdir(parents=True)
    sb = start_sandbox(folder)
    svc, _ = start_service(
        folder,
        sb.url,
        WHATSAPP_NOTIFICATIONS_ENABLED="true" if enabled else "false",
        WHATSAPP_ROLLOUT_PERCENT="100",
        WHATSAPP_MAX_CONCURRENCY="128",
    )
    try:
        result = wrk(svc.url, connections, seconds, prefix)
        ended = time.monotonic()
        # taken, as the service counts them: wrk stops counting with requests still in flight,
        # which the service may still commit, so the count is read once it stops growing
        result["accepted"] = settled_count(folder / "service.db")
        with sandbox_client(sb.url) as sandbox:
            expected = int(result["accepted"]) if enabled else 0
            messages = wait_for_messages(sandbox, expected, 120) if enabled else []
            result["sent"] = len(messages) if enabled else sandbox.get("/sandbox/stats").json()["messages"]
            result["catch_up_s"] = time.monotonic() - ended if enabled else 0.0
            refs = [m["parameters"][5] for m in messages]
            result["sent_twice"] = len(refs) - len(set(refs))
        return result
    finally:
        svc.stop()
        sb.stop()


def measure_intake(folder: Path, seconds: float, rounds: int) -> None:
    """(a1) bookings/s and latency, WhatsApp off against on, in alternating rounds; then 256 connections."""
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for r in range(rounds):
        for enabled in (False, True):
            runs[enabled].append(
                intake_run(folder / f"r{r}-{int(enabled)}", enabled, 64, seconds, f"I{r}{int(enabled)}")
            )

    def spread(enabled: bool, key: str) -> str:
        values = [run[key] for run in runs[enabled]]
        return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"

    for enabled in (False, True):
        print(
            f"(a1) WhatsApp {'on ' if enabled else 'off'}, 64 connections, {rounds} x {seconds:g} s: accepted bookings/s "
            f"{spread(enabled, 'rps')}, p50 {spread(enabled, 'p50_ms')} ms, p99 {spread(enabled, 'p99_ms')} ms, "
            f"max {spread(enabled, 'max_ms')} ms (median (min-max) of the rounds); "
            f"errors {sum(run['connect'] + run['read'] + run['write'] + run['timeout'] for run in runs[enabled]):.0f}, "
            f"non-2xx {sum(run['status'] for run in runs[enabled]):.0f}"
        )
    on_rps = statistics.median(run["rps"] for run in runs[True])
    off_rps = statistics.median(run["rps"] for run in runs[False])
    on_p99 = statistics.median(run["p99_ms"] for run in runs[True])
    off_p99 = statistics.median(run["p99_ms"] for run in runs[False])
    accepted = sum(run["accepted"] for run in runs[True])
    sent = sum(run["sent"] for run in runs[True])
    print(
        f"     on/off: bookings/s x{on_rps / off_rps:.2f}, p99 x{on_p99 / off_p99:.2f}; sent {sent:,.0f} of the "
        f"{accepted:,.0f} bookings taken with WhatsApp on (sent twice: {sum(run['sent_twice'] for run in runs[True]):.0f}), "
        f"the sender caught up {spread(True, 'catch_up_s')} s after the load ended"
    )
    wide = intake_run(folder / "wide", True, 256, seconds, "W")
    print(
        f"(a3) WhatsApp on, 256 connections, {seconds:g} s: {wide['rps']:,.0f} bookings/s accepted, p50 "
        f"{wide['p50_ms']:.0f} ms, p99 {wide['p99_ms']:.0f} ms, max {wide['max_ms']:.0f} ms; socket errors "
        f"{wide['connect'] + wide['read'] + wide['write']:.0f}, timeouts (5 s) {wide['timeout']:.0f}, "
        f"503 {wide['status']:.0f}; sent {wide['sent']:,.0f} of {wide['accepted']:,.0f}"
    )


def measure_drain(folder: Path, backlog: int) -> None:
    """Fill the outbox with the service stopped, then time how fast it empties."""
    sb = start_sandbox(folder)
    svc, _env_file = start_service(folder, sb.url, WHATSAPP_MAX_CONCURRENCY="128")
    svc.stop()
    db = sqlite3.connect(folder / "service.db")
    now = time.time()
    with db:
        for i in range(backlog):
            cur = db.execute(
                "INSERT INTO bookings (booking_ref, customer_id, parent_name, child_name, phone, event_name, venue, "
                "event_date, amount, payment_method, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    f"B-{i}",
                    f"c{i}",
                    "Asha",
                    "Ravi",
                    "+919876543210",
                    "Camp",
                    "Hall",
                    "2026-12-20",
                    "1500.00",
                    "UPI",
                    now,
                ),
            )
            db.execute(
                "INSERT INTO notifications (booking_id, status, next_attempt_at, created_at, updated_at) "
                "VALUES (?, 'pending', 0, ?, ?)",
                (cur.lastrowid, now, now),
            )
    db.close()
    svc, _ = start_service(folder, sb.url, WHATSAPP_MAX_CONCURRENCY="128")
    try:
        with sandbox_client(sb.url) as sandbox:
            messages = wait_for_messages(sandbox, backlog, 120)
        stamps = sorted(m["ts"] for m in messages)
        rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        print(
            f"(a2) backlog of {backlog} drained at {rate:.0f} notifications/s "
            f"({len(messages)} sent, first to last {stamps[-1] - stamps[0]:.1f} s)"
        )
    finally:
        svc.stop()
        sb.stop()


async def offered_load(url: str, rate: float, seconds: float, prefix: str) -> tuple[dict[str, float], list[float]]:
    """POST bookings at ``rate``/s for ``seconds`` (a low rate: (b) times single requests, and httpx
    is not a load generator); returns {ref: request start} and request latencies."""
    started: dict[str, float] = {}
    latencies: list[float] = []
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    clients = [httpx.AsyncClient(base_url=url, limits=limits, timeout=30) for _ in range(32)]
    gate = asyncio.Semaphore(256)
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        ref = f"{prefix}-{i}"
        async with gate:
            t = time.perf_counter()
            started[ref] = time.time()
            response = await clients[i % len(clients)].post(
                "/api/bookings", json=synthetic_booking(ref, f"c{i}", amount="1500")
            )
            latencies.append(time.perf_counter() - t)
            if response.status_code != 201:
                raise RuntimeError(f"booking failed: {response.status_code} {response.text}")

    try:
        await asyncio.gather(*(one(i) for i in range(total)))
    finally:
        for client in clients:
            await client.aclose()
    return started, latencies


def measure_hang_ratio(folder: Path, rate: float, block_s: float, rounds: int) -> None:
    sb = start_sandbox(folder)
    svc, env_file = start_service(folder, sb.url, WHATSAPP_TIMEOUT_MS="10000")
    try:
        with sandbox_client(sb.url) as sandbox:
            sandbox.patch("/sandbox/faults", json={"hang_rate": 1.0, "hang_seconds": 30})
            on: list[float] = []
            off: list[float] = []
            for r in range(rounds):
                for enabled, bucket in ((True, on), (False, off)):
                    values = read_env_file(env_file)
                    values["WHATSAPP_NOTIFICATIONS_ENABLED"] = "true" if enabled else "false"
                    write_env_file(env_file, values)
                    time.sleep(0.1)
                    _, latencies = asyncio.run(offered_load(svc.url, rate, block_s, f"H{r}{int(enabled)}"))
                    bucket.extend(latencies)
            hung = sandbox.get("/sandbox/stats").json()["hung"]
        p99_on, p99_off = percentile(on, 99), percentile(off, 99)
        print(
            f"(b)  provider hanging ({hung} requests hung): booking POST p99 with WhatsApp on "
            f"{p99_on * 1000:.2f} ms, off {p99_off * 1000:.2f} ms; ratio {p99_on / p99_off:.3f} "
            f"(medians {statistics.median(on) * 1000:.2f} / {statistics.median(off) * 1000:.2f} ms; "
            f"{len(on)} + {len(off)} requests at {rate:.0f}/s in {rounds} alternating rounds of {block_s:.0f} s)"
        )
    finally:
        svc.stop()
        sb.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--hang-rate", type=float, default=100)
    parser.add_argument("--hang-block", type=float, default=8)
    parser.add_argument("--hang-rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for name in ("drain", "hang"):
            (base / name).mkdir()
        measure_intake(base / "intake", args.seconds, args.rounds)
        measure_drain(base / "drain", args.backlog)
        measure_hang_ratio(base / "hang", args.hang_rate, args.hang_block, args.hang_rounds)


if __name__ == "__main__":
    main()
