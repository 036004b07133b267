"""Issue 2's figures, measured in one run on this machine.

(a) notifications per second the service sustains to the sandbox, with p50 and p99 delay from
    the booking request to the provider accepting the message:
      a1. offered load: bookings posted at a fixed rate over HTTP, while the service sends them;
      a2. sender ceiling: a backlog of bookings drained by the outbox alone.
(b) p99 booking-request latency with WhatsApp on and the provider hanging, divided by the same
    with WhatsApp off, measured in alternating blocks on one service.

Usage: python benchmarks/service_throughput.py [--rate 1000] [--seconds 10]
Sandbox, service and this load generator are three processes; everything is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _procs import sandbox_client, start_sandbox, start_service, wait_for_messages

from rollout.checks.bookings import synthetic_booking
from rollout.util.envfile import read_env_file, write_env_file
from rollout.util.numbers import percentile


async def offered_load(url: str, rate: float, seconds: float, prefix: str) -> tuple[dict[str, float], list[float]]:
    """POST bookings at ``rate``/s for ``seconds``; returns {ref: request start} and request latencies."""
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


def measure_offered(folder: Path, rate: float, seconds: float) -> None:
    sb = start_sandbox(folder)
    svc, _ = start_service(folder, sb.url, WHATSAPP_MAX_CONCURRENCY="128")
    try:
        with sandbox_client(sb.url) as sandbox:
            t0 = time.time()
            started, latencies = asyncio.run(offered_load(svc.url, rate, seconds, "A"))
            offered_s = time.time() - t0
            messages = wait_for_messages(sandbox, len(started), 60)
        done_at = max(m["ts"] for m in messages)
        delays = sorted(m["ts"] - started[m["parameters"][5]] for m in messages)
        sent_rate = len(messages) / (done_at - min(started.values()))
        print(
            f"(a1) offered {rate:.0f} bookings/s for {seconds:.0f} s ({len(started)} bookings, "
            f"posted in {offered_s:.1f} s = {len(started) / offered_s:.0f}/s achieved)"
        )
        print(
            f"     sent {len(messages)}/{len(started)} notifications at {sent_rate:.0f}/s end to end; "
            f"booking->provider delay p50 {percentile(delays, 50) * 1000:.0f} ms, "
            f"p99 {percentile(delays, 99) * 1000:.0f} ms; booking POST p99 "
            f"{percentile(latencies, 99) * 1000:.1f} ms"
        )
    finally:
        svc.stop()
        sb.stop()


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
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--hang-rate", type=float, default=100)
    parser.add_argument("--hang-block", type=float, default=8)
    parser.add_argument("--hang-rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for name in ("offered", "drain", "hang"):
            (base / name).mkdir()
        measure_offered(base / "offered", args.rate, args.seconds)
        measure_drain(base / "drain", args.backlog)
        measure_hang_ratio(base / "hang", args.hang_rate, args.hang_block, args.hang_rounds)


if __name__ == "__main__":
    main()
