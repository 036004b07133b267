"""How long ``rollout plan`` takes for the shipped playbook with its forecasts, against the same plan
without them (no traffic known: the forecast says so and computes nothing), and the forecast alone.

Each run is a fresh process, as a person runs it (imports included); the state file does not exist
(plan never creates it). Prints the median and the slowest of each, and the machine's load.

Usage: python benchmarks/plan_forecast.py [--runs 7] [--traffic 50/s]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process: less moved by the machine's other work)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rollout", *args], cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"rollout {' '.join(args)} failed: {proc.stderr.strip()}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--traffic", default="50/s")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="plan-bench-"))
    env = {
        **os.environ,
        "ZAPTRA_API_TOKEN": "x" * 12,
        "ROLLOUT_ADMIN_TOKEN": "y" * 12,
        "ZAPTRA_SANDBOX_TOKEN": "z" * 12,
        "ROLLOUT_STATE": str(folder / "state.db"),
        "ROLLOUT_PRODUCTION_ENV_FILE": str(folder / "p.env"),
        # nothing listens here: without --traffic the plan cannot read one, and forecasts nothing
        "ROLLOUT_PRODUCTION_URL": "http://127.0.0.1:9",
    }
    plain = ["plan", "--env", "production"]
    with_forecast = [*plain, "--traffic", args.traffic]
    rows = []
    for name, command in (
        ("plan, no traffic known (no forecast)", plain),
        (f"plan --traffic {args.traffic}", with_forecast),
    ):
        runs = [timed(command, env) for _ in range(args.runs)]
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        rows.append((name, statistics.median(walls), max(walls), statistics.median(cpus)))
    from rollout.gates.forecast import forecast_steps
    from rollout.playbook.load import load_playbook

    book = load_playbook(REPO / "playbooks" / "whatsapp.yaml")
    alone, cpu = [], []
    for _ in range(args.runs):
        started, used = time.perf_counter(), time.process_time()
        forecast_steps(book, book.phase_for("production"), float(args.traffic.split("/")[0]))
        alone.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
    rows.append(("forecast_steps alone, in process", statistics.median(alone), max(alone), statistics.median(cpu)))
    print(f"{args.runs} runs each; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| what | wall, median | wall, slowest | CPU, median |")
    print("|---|---|---|---|")
    for name, median, slowest, used in rows:
        print(f"| {name} | {median:.2f} s | {slowest:.2f} s | {used:.2f} s |")


if __name__ == "__main__":
    main()
