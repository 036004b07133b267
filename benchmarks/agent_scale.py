"""How many environments an always-on agent keeps on time, and how fast agents on PostgreSQL take a
dead one's environments over.

Lightweight stand-in targets: one process serves every environment's flag endpoint, health and
stats (``/env/N/...``), and records when each flag write arrived. Each environment is its own
project (a playbook with one phase, an http target, an http flag backend, an http provider),
ramping 10 % -> 100 % with a long hold and its gate evaluated every ``--interval`` seconds.

Figures printed:
- lateness of evaluations: the gap between two evaluations of one environment, less the interval
  (p50 / p99 / max over every environment, after every environment reached 10 %);
- breach -> flag off: a few environments, one after another, turned bad; the time until the
  stand-in received the flag-off write;
- with several agents: each agent's share of the environments against the mean; after ``kill -9``
  of one, the time until every one of its environments is owned again.

    python benchmarks/agent_scale.py --envs 200 --agents 1            # SQLite, one agent
    python benchmarks/agent_scale.py --envs 600 --agents 3 --kill     # PostgreSQL, three agents
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from rollout.engine import handoff, leases
from rollout.engine.pgstate import PgStateStore
from rollout.engine.state import StateRecords, StateStore
from rollout.util.serving import free_port

TOKEN = "bench-flag-token-1234"

STANDIN = r"""
import asyncio, json, sys, time
from aiohttp import web
state = {}
def env(i):
    return state.setdefault(i, {"enabled": False, "percent": 0, "bad": 0.0, "off_at": None})
async def flag_get(request):
    e = env(request.match_info["i"])
    return web.json_response({"feature": {"enabled": e["enabled"], "percent": e["percent"]}})
async def flag_put(request):
    e = env(request.match_info["i"])
    body = await request.json()
    was = e["enabled"]
    e["enabled"], e["percent"] = bool(body["on"]), int(body["share"])
    e["off_at"] = time.time() if was and not e["enabled"] else None if e["enabled"] else e["off_at"]
    return web.json_response({"ok": True})
async def stats(request):
    e = env(request.match_info["i"])
    return web.json_response({"n": 200, "bad": e["bad"] if e["enabled"] else 0.0})
async def health(request):
    return web.json_response({"status": "ok"})
async def bad(request):
    e = env(request.match_info["i"])
    e["bad"] = 0.5
    return web.json_response({"at": time.time()})
async def dump(request):
    return web.json_response(state)
app = web.Application()
app.add_routes([web.get("/env/{i}/admin/flag", flag_get), web.put("/env/{i}/admin/flag", flag_put),
    web.get("/env/{i}/stats", stats), web.get("/env/{i}/healthz", health), web.post("/control/bad/{i}", bad),
    web.get("/control/state", dump)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

PLAYBOOK = """\
version: 1
name: e{i}
target:
  kind: http
  health: {{url: /healthz, expect: {{status: 200}}}}
flag:
  backend: http
  variable: FEATURE_ON
  percent_variable: FEATURE_SHARE
  url: /admin/flag
  token: ${{FLAG_TOKEN}}
  body: {{"on": $enabled, "share": $percent}}
  read: {{url: /admin/flag, enabled: feature.enabled, percent: feature.percent}}
providers:
  stats: {{kind: http}}
gates:
  g:
    window: 30s
    min_samples: 1
    metrics:
      - {{metric: errors, provider: stats, kind: rate, query: {{url: /stats, value: bad, samples: n}}, target: 1%, alert: 5%}}
phases:
  - name: e{i}
    environment: e{i}
    steps:
      - kind: configure
        set: {{FEATURE_ON: "false", FEATURE_SHARE: "0"}}
      - kind: ramp
        percentages: [10, 100]
        hold: 1h
        interval: {interval}s
        gate: g
        max_hold: 1h
"""


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def open_state(url: str) -> StateRecords:
    return PgStateStore(url) if url.startswith("postgresql://") else StateStore(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", type=int, default=200)
    parser.add_argument("--agents", type=int, default=1)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--measure", type=float, default=60.0, help="seconds of evaluations measured")
    parser.add_argument("--breaches", type=int, default=5)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--lease-ttl", default="5s")
    parser.add_argument("--kill", action="store_true", help="kill -9 one agent and time the re-owning")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="agent-scale-"))
    pg = None
    if args.agents > 1:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.support.postgres import Postgres

        pg = Postgres()
        state_url = pg.database()
    else:
        state_url = str(folder / "state.db")
    port = free_port()
    (folder / "standin.py").write_text(STANDIN)
    standin = subprocess.Popen([sys.executable, str(folder / "standin.py"), str(port)])
    base = f"http://127.0.0.1:{port}"
    wait(lambda: _up(f"{base}/control/state"), 30, "the stand-in")
    names = [f"e{i}" for i in range(args.envs)]
    for i, name in enumerate(names):
        project = folder / name
        (project / "environments").mkdir(parents=True)
        (project / "ops.yaml").write_text(PLAYBOOK.format(i=i, interval=args.interval))
        (project / "environments" / f"{name}.yaml").write_text(f"name: {name}\nservice_url: {base}/env/{i}\n")
    config = folder / "agent.yaml"
    config.write_text(
        f"state: {state_url}\nworkers: {args.workers}\nlease_ttl: {args.lease_ttl}\nprojects:\n"
        + "".join(
            f"  - playbook: {folder / n / 'ops.yaml'}\n    environments: {folder / n / 'environments'}\n" for n in names
        )
    )
    env = {**os.environ, "FLAG_TOKEN": TOKEN}
    agents = []
    for a in range(args.agents):
        log = open(folder / f"agent-{a}.log", "w")  # noqa: SIM115 - written by the process until it ends
        agent_port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rollout",
                "agent",
                "--config",
                str(config),
                "--name",
                f"agent-{a}",
                "--listen",
                f"127.0.0.1:{agent_port}",
                "--log-format",
                "json",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
        )
        agents.append((f"agent-{a}", proc, agent_port))
    for name, _, agent_port in agents:
        wait(lambda p=agent_port: _up(f"http://127.0.0.1:{p}/healthz"), 120, f"{name}")
    state = open_state(state_url)
    started = time.time()
    for name in names:
        handoff.request_run(state, name, {}, "benchmark", time.time())

    def at_ten() -> bool:
        standing = httpx.get(f"{base}/control/state", timeout=10).json()
        return sum(1 for s in standing.values() if s["percent"] == 10 and s["enabled"]) == len(names)

    wait(at_ten, 600, "every environment at 10 %")
    ramped = time.time()
    print(f"{len(names)} environments at 10 % in {ramped - started:.1f}s ({args.agents} agent(s))")
    time.sleep(args.measure)
    late = []
    for name in names:
        ts = [v["ts"] for v in state.verdicts(name, limit=10_000) if v["ts"] >= ramped]
        late += [max(0.0, b - a - args.interval) for a, b in itertools.pairwise(ts)]
    late.sort()
    print(
        f"evaluation lateness over {len(late)} gaps ({args.measure:g}s, every {args.interval:g}s): "
        f"p50 {statistics.median(late):.3f}s, p99 {late[int(len(late) * 0.99) - 1]:.3f}s, max {late[-1]:.3f}s"
    )
    for _, _, agent_port in agents:
        health = httpx.get(f"http://127.0.0.1:{agent_port}/healthz", timeout=10).json()
        print(
            f"  {health['agent']}: {health['environments']} environments, its own lateness {health.get('lateness_s')}"
        )
    offs = []
    count = len(names)
    for i in range(min(args.breaches, count)):
        k = i * 7 % count
        breached = httpx.post(f"{base}/control/bad/{k}", timeout=10).json()["at"]
        off = wait(
            lambda k=k: httpx.get(f"{base}/control/state", timeout=10).json()[str(k)]["off_at"],
            args.interval * 3 + 30,
            "the flag off",
        )
        offs.append(off - breached)
    print(
        f"breach -> flag off (interval {args.interval:g}s), {len(offs)} environments: "
        + ", ".join(f"{o:.2f}s" for o in offs)
        + f"; max {max(offs):.2f}s (bound: interval + 1s = {args.interval + 1:g}s)"
    )
    if args.agents > 1:
        held = leases.leases(state, time.time())
        shares = {name: sum(1 for lease in held.values() if lease.owner == name) for name, _, _ in agents}
        mean = sum(shares.values()) / len(shares)
        print(
            "shares: "
            + ", ".join(f"{k} {v} ({(v - mean) / mean * 100:+.0f}%)" for k, v in shares.items())
            + f"; mean {mean:.0f}"
        )
        if args.kill:
            victim, proc, _ = agents[0]
            orphans = [e for e, lease in held.items() if lease.owner == victim]
            proc.send_signal(signal.SIGKILL)
            killed = time.time()

            def reowned() -> bool:
                now = leases.leases(state, time.time())
                return all(e in now and now[e].owner != victim for e in orphans)

            wait(reowned, 120, "the orphans owned again")
            print(
                f"kill -9 of {victim} ({len(orphans)} environments) -> all owned again in {time.time() - killed:.2f}s "
                f"(lease {args.lease_ttl})"
            )
    for _, proc, _ in agents:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for _, proc, _ in agents:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    standin.terminate()
    state.close()
    if pg is not None:
        pg.close()
    print(json.dumps({"folder": str(folder)}))


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
