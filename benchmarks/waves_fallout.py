"""Waves across regions, ``on_failure: all_regions``: how long after the failing region's flag-off every
other region's service has its flag off too.

Three regions (eu-west; then us-east and ap-south) are three real service processes on one sandbox,
each with customers booking at ``--rate``; ``rollout advance --phase``'s engine drives them in this
process in real time. Once the second wave holds 10 %, the provider starts failing; the first
region to see it turns its flag off, then the policy turns off the other two. Printed per run and
over all runs: the provider failing -> the first flag-off write; that write -> each other region's
flag-off write, and -> its service confirming it off.

Usage: python benchmarks/waves_fallout.py [--runs 5] [--rate 30]
Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from rollout.console import QuietReporter
from rollout.demo import Traffic
from rollout.demo.stack import Stack
from rollout.engine import fanout
from rollout.engine.project import Project
from rollout.engine.state import StateStore
from rollout.flags import FlagStore
from rollout.util.clock import SystemClock

REGIONS = ("eu-west", "us-east", "ap-south")

PLAYBOOK = """\
version: 1
name: waves-fallout-benchmark
gates:
  seed:
    window: 10s
    min_samples: 10
    metrics:
      - {metric: success_rate, target: 95%, alert: 90%}
      - {metric: error_rate, target: 1%, alert: 5%}
phases:
  - name: production
    waves:
      - environments: [eu-west]
      - environments: [us-east, ap-south]
        after: 1s
    weights: {eu-west: 50, us-east: 30, ap-south: 20}
    on_failure: all_regions
    steps:
      - kind: configure
        set: {WHATSAPP_NOTIFICATIONS_ENABLED: "false", WHATSAPP_ROLLOUT_PERCENT: "0"}
      - {kind: ramp, percentages: [10, 50, 100], hold: 30s, interval: 0.5s, gate: seed, max_hold: 1m}
"""


def prepare(folder: Path, stack: Stack) -> Project:
    (folder / "environments").mkdir(parents=True, exist_ok=True)
    for region in REGIONS:
        (folder / "environments" / f"{region}.yaml").write_text(
            f"name: {region}\nservice_url: {stack.url(region)}\nenv_file: {stack.env_file(region)}\n"
            "variables:\n"
            f"  ZAPTRA_API_URL: {stack.provider_url}\n"
            "  ZAPTRA_API_TOKEN: ${ZAPTRA_API_TOKEN}\n"
            "  ROLLOUT_ADMIN_TOKEN: ${ROLLOUT_ADMIN_TOKEN}\n"
            "  WHATSAPP_TIMEOUT_MS: 1000\n"
        )
    (folder / "p.yaml").write_text(PLAYBOOK)
    os.environ.update(stack.engine_environ())
    return Project(folder / "p.yaml", folder / "environments", folder / "state.db")


def one_run(folder: Path, rate: float) -> dict[str, float]:
    with Stack(folder, environments=REGIONS) as stack:
        stack.start(service_env={"WHATSAPP_TIMEOUT_MS": "1000"})
        project = prepare(folder, stack)
        traffic = [Traffic(stack.url(region), rate).start() for region in REGIONS]
        failing_at: list[float] = []

        def breach() -> None:
            second = FlagStore(stack.env_file("ap-south"))
            while second.state() != (True, 10):
                time.sleep(0.01)
            time.sleep(1.0)
            failing_at.append(time.time())
            stack.faults(error_rate=1.0)

        threading.Thread(target=breach, daemon=True).start()
        phase = fanout.waved_phase(project, "production")
        outcome = fanout.advance_phase(project, phase, SystemClock(), QuietReporter())
        for t in traffic:
            t.stop()
        assert outcome.exit_code == 1, outcome.message
        state = StateStore(project.state_path)
        try:
            offs = {r: [a for a in state.audit_log(r) if a["action"] == "flag_off"] for r in REGIONS}
            confirmed = {r: [a for a in state.audit_log(r) if a["action"] == "flag_off_confirmed"] for r in REGIONS}
        finally:
            state.close()
        first = min(REGIONS, key=lambda r: offs[r][0]["id"] if offs[r] else 1 << 60)
        t_first = offs[first][0]["ts"]
        others = [r for r in REGIONS if r != first]
        figures = {
            "failing_to_first_off_s": t_first - failing_at[0],
            "first_off_to_others_off_ms": max(offs[r][0]["ts"] - t_first for r in others) * 1000,
            "first_off_to_others_confirmed_ms": max(confirmed[r][0]["ts"] - t_first for r in others) * 1000,
        }
        print(
            f"  first off: {first}; provider failing -> its flag-off {figures['failing_to_first_off_s']:.2f} s; "
            f"-> the others' writes {figures['first_off_to_others_off_ms']:.0f} ms, "
            f"confirmed by their services {figures['first_off_to_others_confirmed_ms']:.0f} ms",
            flush=True,
        )
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=30.0, help="bookings per second per region")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="waves-fallout-") as tmp:
        for n in range(args.runs):
            runs.append(one_run(Path(tmp) / f"run{n}", args.rate))
    print(f"{args.runs} runs, 3 regions, {args.rate:g} bookings/s each (all_regions):")
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"  {key}: median {statistics.median(values):.2f}, max {max(values):.2f}")


if __name__ == "__main__":
    sys.exit(main())
