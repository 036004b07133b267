"""Issue 3's figures, measured in one run with the demo's settings at 50 bookings/s.

(a) seconds from the provider starting to fail to the flag being off in the service
    (the engine's write, and the service confirming it);
(b) seconds from the flag write to the service's last WhatsApp send (last `attempt` in its log);
(c) customers who got a failed WhatsApp attempt in between, and whether each is in the fallback outbox;
(d) false rollbacks in N healthy runs at a 1 % provider error rate.

Usage: python benchmarks/kill_switch.py [--runs 20] [--rate 50]
Everything runs on 127.0.0.1: the sandbox and the service as processes, the engine in this one.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from rollout.console import QuietReporter
from rollout.demo import DEMO_TIMINGS, Traffic
from rollout.demo.stack import Stack
from rollout.engine import runner
from rollout.engine.project import Project
from rollout.engine.state import StateStore
from rollout.flags import FlagStore
from rollout.util.clock import SystemClock

PLAYBOOK = """\
version: 1
name: kill-switch-benchmark
gates:
  seed:
    window: ${ROLLOUT_GATE_WINDOW}
    min_samples: ${ROLLOUT_MIN_SAMPLES}
    metrics:
      - {metric: success_rate, target: 95%, alert: 90%}
      - {metric: avg_latency_ms, target: 2000, alert: 5000}
      - {metric: breaker_activations, target: 1, alert: 3, window: "${ROLLOUT_BREAKER_WINDOW}", min_samples: 1}
      - {metric: error_rate, target: 1%, alert: 5%}
watch: {gate: seed, interval: "${ROLLOUT_WATCH_INTERVAL}"}
phases:
  - name: production
    environment: production
    steps:
      - kind: configure
        set: {WHATSAPP_NOTIFICATIONS_ENABLED: "false", WHATSAPP_ROLLOUT_PERCENT: "0"}
      - kind: ramp
        percentages: [10, 25, 50, 100]
        hold: ${ROLLOUT_RAMP_HOLD}
        interval: ${ROLLOUT_RAMP_INTERVAL}
        gate: seed
        max_hold: ${ROLLOUT_MAX_HOLD}
        on_hold_timeout: approve
"""

REPO = Path(__file__).resolve().parents[1]


def prepare(folder: Path, stack: Stack) -> Project:
    (folder / "playbooks").mkdir(parents=True, exist_ok=True)
    (folder / "playbooks" / "p.yaml").write_text(PLAYBOOK)
    os.environ.update(DEMO_TIMINGS)
    os.environ.update(stack.engine_environ())
    return Project(folder / "playbooks" / "p.yaml", REPO / "environments", folder / "state.db")


def audit(project: Project, action: str) -> list[dict]:
    state = StateStore(project.state_path)
    try:
        return [a for a in state.audit_log("production") if a["action"] == action]
    finally:
        state.close()


def last_attempt(log: Path) -> float | None:
    last = None
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "attempt":
            last = datetime.fromisoformat(event["ts"]).timestamp()
    return last


def breach_run(folder: Path, rate: float) -> None:
    with Stack(folder, environments=("production",)) as stack:
        stack.start(service_env={"WHATSAPP_TIMEOUT_MS": DEMO_TIMINGS["WHATSAPP_TIMEOUT_MS"]})
        project = prepare(folder, stack)
        flags = FlagStore(stack.env_file("production"))
        traffic = Traffic(stack.url("production"), rate).start()
        failing_at: list[float] = []

        def breach() -> None:
            while flags.state() != (True, 25):
                time.sleep(0.01)
            time.sleep(2.0)  # healthy data at 25% first
            failing_at.append(time.time())
            stack.faults(error_rate=1.0)

        threading.Thread(target=breach, daemon=True).start()
        with runner.open_context(project, "production", SystemClock(), QuietReporter()) as ctx:
            outcome = runner.advance(ctx)
        time.sleep(1.0)
        traffic.stop()
        assert outcome.status == "rolled_back", outcome.message
        t_fail = failing_at[0]
        t_write = audit(project, "flag_off")[0]["ts"]
        confirmed = audit(project, "flag_off_confirmed")
        t_confirmed = confirmed[0]["ts"] if confirmed else float("nan")
        # wait for scheduled retries to end (they end in fallback now that the flag is off)
        db = sqlite3.connect(folder / "production" / "service.db")
        deadline = time.time() + 30
        while db.execute("SELECT COUNT(*) FROM notifications WHERE status IN ('pending','sending')").fetchone()[0]:
            if time.time() > deadline:
                break
            time.sleep(0.2)
        failed_customers = {
            r[0]
            for r in db.execute(
                "SELECT DISTINCT b.customer_id FROM events e JOIN bookings b ON b.id = e.booking_id "
                "WHERE e.ts >= ? AND (e.kind = 'call_error' OR (e.kind = 'failed' AND e.reason != 'invalid_phone'))",
                (t_fail,),
            )
        }
        in_fallback = {
            r[0]
            for r in db.execute(
                "SELECT DISTINCT b.customer_id FROM fallback_outbox f JOIN bookings b ON b.id = f.booking_id"
            )
        }
        sent_after = db.execute(
            "SELECT COUNT(*) FROM events WHERE kind IN ('call_ok','call_error') AND ts > ?", (t_write,)
        ).fetchone()[0]
        db.close()
        last = last_attempt(folder / "logs" / "production-events.log")
        print(
            f"(a) provider failing -> flag written off: {t_write - t_fail:.2f} s; "
            f"-> service confirms it off: {t_confirmed - t_fail:.2f} s"
        )
        print(
            f"(b) flag write -> last WhatsApp send by the service: "
            f"{max(0.0, (last or t_write) - t_write) * 1000:.0f} ms ({sent_after} provider calls after the write)"
        )
        missing = failed_customers - in_fallback
        print(
            f"(c) {len(failed_customers)} customers got a failed WhatsApp attempt; "
            f"{len(failed_customers) - len(missing)} of them are in the fallback outbox"
            + (f"; MISSING: {sorted(missing)}" if missing else "")
        )


def pure_propagation(folder: Path, rate: float, samples: int) -> None:
    """Flag off under healthy traffic: write -> the service's last send, repeated."""
    delays = []
    with Stack(folder, environments=("production",)) as stack:
        stack.start()
        flags = FlagStore(stack.env_file("production"))
        traffic = Traffic(stack.url("production"), rate).start()
        log = folder / "logs" / "production-events.log"
        for _ in range(samples):
            flags.set(enabled=True, percent=100)
            time.sleep(1.0)
            t_write = time.time()
            flags.set(enabled=False)
            time.sleep(0.5)
            last = last_attempt(log) or t_write
            delays.append(max(0.0, last - t_write))
        traffic.stop()
    print(
        f"(b') flag write -> last send under healthy traffic at {rate:g}/s, {samples} kills: "
        f"median {statistics.median(delays) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms"
    )


def healthy_runs(folder: Path, rate: float, runs: int) -> None:
    false_rollbacks = 0
    held = 0
    durations = []
    for i in range(runs):
        with Stack(folder / f"healthy-{i}", environments=("production",)) as stack:
            stack.start()
            stack.faults(error_rate=0.01)
            project = prepare(folder / f"healthy-{i}", stack)
            traffic = Traffic(stack.url("production"), rate).start()
            started = time.monotonic()
            with runner.open_context(project, "production", SystemClock(), QuietReporter()) as ctx:
                outcome = runner.advance(ctx)
            traffic.stop()
            durations.append(time.monotonic() - started)
            false_rollbacks += outcome.status == "rolled_back"
            held += outcome.status == "awaiting_approval"
            print(
                f"    run {i + 1}: {outcome.status} in {durations[-1]:.1f}s"
                + (f" - {outcome.message[:160]}" if outcome.status != "completed" else ""),
                flush=True,
            )
    print(
        f"(d) {runs} healthy runs at a 1% provider error rate: {false_rollbacks} false rollbacks, "
        f"{held} stopped for approval after a long hold, {runs - false_rollbacks - held} completed; "
        f"median {statistics.median(durations):.1f}s per ramp"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            breach_run(Path(tmp) / "breach", args.rate)
            pure_propagation(Path(tmp) / "propagation", args.rate, args.kills)
            healthy_runs(Path(tmp), args.rate, args.runs)
        finally:
            os.environ.clear()
            os.environ.update(saved)


if __name__ == "__main__":
    sys.exit(main())
