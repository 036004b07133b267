"""Breach -> flag off: the embedded provider against Prometheus, measured side by side in one run.

The same ramp (10 % then 100 %, evaluated every second over a 10 s window, at least 10 samples) runs
against the embedded service with 50 bookings/s; 3 s into the 10 % step the sandbox starts failing
every send. The gate is the same rule read two ways: the built-in ``success_rate`` from
``/api/whatsapp/metrics``, or the notification failure rate computed by a real Prometheus
(scrape interval 1 s) from the service's ``/metrics``. Runs alternate between the two.

Usage: python benchmarks/breach_to_flag_off.py [--runs 3] [--rate 50]
Needs the ``prometheus`` binary (Debian package ``prometheus``) and the test extras installed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rollout.console import QuietReporter
from rollout.demo import DEMO_TIMINGS, Traffic
from rollout.demo.stack import Stack
from rollout.engine import runner
from rollout.engine.runner import Project
from rollout.engine.state import StateStore
from rollout.flags import FlagStore
from rollout.util.clock import SystemClock
from tests.support.prometheus import Prometheus

GATES = {
    "embedded": "      - {metric: success_rate, target: 95%, alert: 90%}\n",
    "prometheus": (
        "      - metric: notification_failure_rate\n"
        "        provider: prom\n"
        "        kind: rate\n"
        '        query: sum(increase(rollout_whatsapp_notification_outcomes_total{outcome="failed"}[$window]))\n'
        '        samples: sum(increase(rollout_whatsapp_notification_outcomes_total{outcome=~"sent|failed"}[$window]))\n'
        "        target: 5%\n"
        "        alert: 10%\n"
    ),
}
# --by-reason: the same rule on the counter with a reason label, whose failed series is born with the
# first failure (what the gate read before the outcome counter existed)
GATES["prometheus-by-reason"] = GATES["prometheus"].replace(
    "rollout_whatsapp_notification_outcomes_total", "rollout_whatsapp_notifications_total"
)
PLAYBOOK = """\
version: 1
name: breach-to-flag-off
providers:
  prom: {{kind: prometheus, url: "{prometheus}"}}
gates:
  g:
    window: 10s
    min_samples: 10
    metrics:
{metrics}watch: {{gate: g, interval: 1s}}
phases:
  - name: production
    environment: production
    steps:
      - kind: configure
        set: {{WHATSAPP_NOTIFICATIONS_ENABLED: "false", WHATSAPP_ROLLOUT_PERCENT: "0"}}
      - kind: ramp
        percentages: [10, 100]
        hold: 120s
        interval: 1s
        gate: g
        max_hold: 0s
        on_hold_timeout: fail
"""
REPO = Path(__file__).resolve().parents[1]


def one_run(folder: Path, provider: str, rate: float, phase: float) -> tuple[float, float]:
    """(seconds from the breach to the flag written off, to the service confirming it); the breach
    starts ``3 + phase`` s after the 10 % write."""
    with Stack(folder, environments=("production",)) as stack:
        stack.start(service_env={"WHATSAPP_TIMEOUT_MS": DEMO_TIMINGS["WHATSAPP_TIMEOUT_MS"]})
        prom = Prometheus(folder / "prometheus", [stack.url("production").removeprefix("http://")])
        try:
            book = folder / "p.yaml"
            book.write_text(PLAYBOOK.format(prometheus=prom.url, metrics=GATES[provider]))
            os.environ.update(DEMO_TIMINGS)
            os.environ.update(stack.engine_environ())
            project = Project(book, REPO / "environments", folder / "state.db")
            flags = FlagStore(stack.env_file("production"))
            traffic = Traffic(stack.url("production"), rate).start()
            failing_at: list[float] = []

            def breach() -> None:
                while flags.state() != (True, 10):
                    time.sleep(0.01)
                # the engine evaluates once a second from the write: a breach at a fixed offset would
                # always land at the same point between two evaluations
                time.sleep(3.0 + phase)
                failing_at.append(time.time())
                stack.faults(error_rate=1.0)

            threading.Thread(target=breach, daemon=True).start()
            with runner.open_context(project, "production", SystemClock(), QuietReporter()) as ctx:
                outcome = runner.advance(ctx)
            traffic.stop()
            assert outcome.status == "rolled_back", outcome.message
            state = StateStore(project.state_path)
            try:
                log = state.audit_log("production")
            finally:
                state.close()
            off = next(a["ts"] for a in log if a["action"] == "flag_off")
            confirmed = next((a["ts"] for a in log if a["action"] == "flag_off_confirmed"), float("nan"))
            return off - failing_at[0], confirmed - failing_at[0]
        finally:
            prom.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument(
        "--by-reason", action="store_true", help="also gate on the reason-labelled counter (the query before)"
    )
    args = parser.parse_args()
    providers = ["embedded", "prometheus"] + (["prometheus-by-reason"] if args.by_reason else [])
    results: dict[str, list[tuple[float, float]]] = {p: [] for p in providers}
    saved = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            phases = random.Random(17)
            for i in range(args.runs):
                phase = phases.random()  # the same for each provider in a run
                for provider in providers:
                    written, confirmed = one_run(Path(tmp) / f"{provider}-{i}", provider, args.rate, phase)
                    results[provider].append((written, confirmed))
                    print(
                        f"run {i + 1} {provider:<20}: breach -> flag written off {written:.2f} s, "
                        f"-> service confirms {confirmed:.2f} s",
                        flush=True,
                    )
        finally:
            os.environ.clear()
            os.environ.update(saved)
    for provider, runs in results.items():
        written = [w for w, _ in runs]
        print(
            f"{provider:<20}: breach -> flag off: median {statistics.median(written):.2f} s, "
            f"max {max(written):.2f} s over {len(runs)} runs"
        )
    embedded = statistics.median(w for w, _ in results["embedded"])
    for provider in providers[1:]:
        ratio = statistics.median(w for w, _ in results[provider]) / embedded
        print(f"{provider} / embedded (medians): {ratio:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
