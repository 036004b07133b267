"""Many launches at once, for the dashboard's tests and benchmark: several projects, each a real
playbook with a phase per environment, and their records written straight into real SQLite state
stores (the rows the engine writes: environments, verdicts with every metric's result, the audit, the
writer locks), in every status an operator meets."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path
from typing import Any

from rollout.engine.project import Project
from rollout.engine.state import StateStore
from rollout.gates.results import MetricResult

PROJECTS = ("checkout", "search", "payments", "notifications", "profiles", "inventory", "billing", "ads")
REGIONS = ("eu-west", "eu-north", "us-east", "us-west", "ap-south", "ap-east", "sa-east", "af-south")
PERCENTAGES = (10, 25, 50, 100)

PLAYBOOK_HEAD = """\
version: 1
name: {name}
description: the {name} launch, one phase per region and cell
gates:
  g:
    window: 5m
    min_samples: 50
    metrics:
      - {{metric: success_rate, target: 95%, alert: 90%}}
      - {{metric: avg_latency_ms, target: 2000, alert: 5000}}
      - {{metric: booking_latency_ms, kind: compare, target: 50, alert: 250}}
watch: {{gate: g, interval: 10s}}
phases:
"""

PHASE = """\
  - name: {env}
    environment: {env}
    steps:
      - kind: configure
        name: deploy with the flag off
        set: {{WHATSAPP_NOTIFICATIONS_ENABLED: "false", WHATSAPP_ROLLOUT_PERCENT: "0"}}
      - kind: ramp
        name: ramp
        percentages: [10, 25, 50, 100]
        hold: 30m
        interval: 10s
        gate: g
"""


def env_names(count: int) -> list[str]:
    """``count`` environment names: a region and a cell (``eu-west-3``)."""
    return [f"{REGIONS[i % len(REGIONS)]}-{i // len(REGIONS) + 1}" for i in range(count)]


def write_playbooks(folder: Path, projects: int, per_project: int) -> dict[str, Project]:
    """``projects`` real playbooks of ``per_project`` phases each, every project with its own state store."""
    found = {}
    for p in range(projects):
        name = PROJECTS[p % len(PROJECTS)] + ("" if p < len(PROJECTS) else f"-{p // len(PROJECTS)}")
        home = folder / name
        (home / "environments").mkdir(parents=True, exist_ok=True)
        book = home / "playbook.yaml"
        book.write_text(PLAYBOOK_HEAD.format(name=name) + "".join(PHASE.format(env=e) for e in env_names(per_project)))
        found[name] = Project(book, home / "environments", home / "state.db")
    return found


def metrics(rng: random.Random, verdict: str, percent: int | None) -> list[dict[str, Any]]:
    """Every metric's result as the gates record it, judged ``verdict`` by its first metric."""
    samples = rng.randint(60, 900)
    rate = {"pass": 0.99, "hold": 0.93, "fail": 0.82}[verdict]
    compared = percent is not None and 0 < percent < 100
    treatment, control = rng.uniform(40, 60), rng.uniform(40, 60)
    return [
        MetricResult(
            "success_rate", verdict, rate, 0.95, 0.9, samples, 50, 300.0,
            f"success_rate {rate * 100:.2f}% {'>' if verdict == 'pass' else '<'} "
            f"{'target 95.00%' if verdict != 'fail' else 'alert 90.00%'} ({samples} samples, 5m)", unit="rate",
        ).as_dict(),
        MetricResult(
            "avg_latency_ms", "pass", 180.0, 2000.0, 5000.0, samples, 50, 300.0,
            f"avg_latency_ms 180 ms < target 2000 ms ({samples} samples, 5m)", unit="latency",
        ).as_dict(),
        MetricResult(
            "booking_latency_ms", "pass", treatment - control if compared else None, 50.0, 250.0,
            samples if compared else 0, 50, 300.0,
            f"booking_latency_ms: treatment {treatment:.1f} ms vs control {control:.1f} ms, difference "
            f"{treatment - control:+.1f} ms < target +50 ms (treatment {samples} / control {samples} samples, 5m)"
            if compared
            else "booking_latency_ms (treatment vs control): not compared, no control group at 100%",
            unit="latency", compare=True, treatment=treatment if compared else None,
            control=control if compared else None,
        ).as_dict(),
    ]  # fmt: skip


def summary(ms: list[dict[str, Any]], verdict: str) -> str:
    deciding = [m for m in ms if m["verdict"] == verdict] or ms
    return f"{verdict}: " + "; ".join(m["reason"] for m in deciding)


def record(
    project: Project, envs: list[str], now: float, seed: int = 1, kinds: list[str] | None = None
) -> dict[str, str]:
    """Write a launch in every status into ``project``'s store, as the engine would; returns each
    environment's recorded status. Most ramps are under way (a few evaluations each), some hold, some
    wait for a person, a few were turned off by their gates, some are done, some not started
    (``kinds``: each environment's status, in order, instead)."""
    rng = random.Random(seed)
    store = StateStore(project.state_path)
    statuses = {}
    try:
        with store.tx() as db:
            for i, env in enumerate(envs):
                kind = (
                    kinds[i]
                    if kinds
                    else rng.choices(
                        ["running", "held", "awaiting_approval", "rolled_back", "completed", "idle", "interrupted"],
                        [55, 12, 5, 4, 12, 8, 4],
                    )[0]
                )
                statuses[env] = kind
                if kind == "idle":
                    continue
                start = now - rng.uniform(600, 7200)
                store.audit(env, "phase_started", start, who="ops@launches", db=db, phase=env)
                store.audit(env, "step_started", start + 1, who="ops@launches", db=db, step="ramp", kind="ramp")
                reached = rng.randrange(4) if kind != "completed" else 3
                t = start + 2
                for r in range(reached + 1):
                    store.audit(env, "ramp", t, who="ops@launches", db=db, step="ramp", percent=PERCENTAGES[r])
                    for _ in range(rng.randint(2, 6)):
                        t += 10
                        verdict = "pass" if kind not in ("held", "rolled_back") else rng.choice(["pass", "hold"])
                        m = metrics(rng, verdict, PERCENTAGES[r])
                        db.execute(
                            "INSERT INTO verdicts (ts, environment, phase, step, percent, verdict, summary, metrics) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (t, env, env, "ramp", PERCENTAGES[r], verdict, summary(m, verdict), store._dump(m, False)),
                        )
                    t += 5
                percent = PERCENTAGES[reached]
                fields: dict[str, Any] = dict(
                    status=kind, phase=env, step_index=1, ramp_index=reached, ramp_applied=True, percent=percent,
                    flag=True, observe_started=t - 20,
                )  # fmt: skip
                if kind == "rolled_back":
                    m = metrics(rng, "fail", percent)
                    reason = f"ramp failed: {summary(m, 'fail')}"
                    store.audit(
                        env, "flag_off", t, who="ops@launches", db=db, automatic=True, reason=reason,
                        previous_flag=True, previous_percent=percent,
                    )  # fmt: skip
                    db.execute(
                        "INSERT INTO verdicts (ts, environment, phase, step, percent, verdict, summary, metrics) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (t, env, env, "ramp", percent, "fail", summary(m, "fail"), store._dump(m, False)),
                    )
                    fields.update(flag=False, reason=reason, observe_started=None)
                if kind == "completed":
                    fields.update(step_index=2, ramp_index=4, ramp_applied=False, observe_started=None)
                store.update(env, t, db=db, **fields)
                if kind == "running":  # an advance runs it (a held one, or one awaiting a person, has exited)
                    db.execute(
                        "INSERT INTO locks (environment, owner, pid, host, acquired_at) VALUES (?, ?, ?, ?, ?)",
                        (env, f"ops{i % 7}@launches", os.getpid(), socket.gethostname(), start),
                    )
    finally:
        store.close()
    return statuses


def launches(folder: Path, projects: int, per_project: int, now: float) -> tuple[dict[str, Project], dict[str, str]]:
    """The projects and every environment's recorded status (key ``project/env``)."""
    found = write_playbooks(folder, projects, per_project)
    statuses = {}
    for seed, (name, project) in enumerate(found.items()):
        for env, status in record(project, env_names(per_project), now, seed).items():
            statuses[f"{name}/{env}"] = status
    return found, statuses
