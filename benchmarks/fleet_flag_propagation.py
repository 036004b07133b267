"""Flag-off propagation to every replica of a fleet, by where the flag lives, in one run.

For each source, three ``rollout serve`` processes follow one flag: the same env file (the
``envfile`` backend), a PostgreSQL flag row (``--flag-db``, LISTEN/NOTIFY), or an Unleash feature
(``--unleash-url``, the Unleash SDK polling every ``--refresh`` seconds); the engine's backend for
that source flips the flag on and off 20 times, and for each flag-off the time from the write's
return until every replica reports the flag off on its own /api/whatsapp/metrics is taken.
PostgreSQL and Unleash are real servers started here in a temporary folder.

Usage: python benchmarks/fleet_flag_propagation.py [--flips 20] [--replicas 3] [--refresh 1]
       [--sources envfile,postgres,unleash]
Needs the PostgreSQL server binaries (Debian ``postgresql``), ``scripts/install-unleash`` for Unleash,
and the test extras installed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._procs import Proc, start_sandbox, start_service
from rollout.flags.envfile import FlagStore
from rollout.flags.postgres import PostgresFlags
from rollout.flags.unleash import UnleashFlags
from rollout.playbook.model import FlagSpec
from tests.postgres import Postgres
from tests.unleash import Unleash


def _replicas(folder: Path, n: int, sandbox_url: str, args: list[str], shared: Path | None = None) -> list[Proc]:
    """``n`` replicas with the flag off, reading ``shared`` (one env file for all) or an env file each."""
    return [
        start_service(
            folder / f"r{i}",
            sandbox_url,
            replica_id=f"r{i}",
            args=args,
            env_file=shared,
            WHATSAPP_NOTIFICATIONS_ENABLED="false",
        )[0]
        for i in range(n)
    ]


def _measure(flags: Any, replicas: list[Proc], flips: int, spread: float) -> list[float]:
    """Each flag-off lands a random 0.2 to 0.2 + ``spread`` s after every replica reported the flag
    on: a polling source would otherwise be measured at one phase of its poll only."""
    rng = random.Random(7)
    clients = [httpx.Client(base_url=p.url, timeout=5) for p in replicas]

    def all_report(enabled: bool) -> bool:
        return all(c.get("/api/whatsapp/metrics?window=1").json()["flag_enabled"] is enabled for c in clients)

    delays = []
    try:
        for _ in range(flips):
            flags.set(enabled=True, percent=100)
            while not all_report(True):
                time.sleep(0.002)
            time.sleep(0.2 + rng.uniform(0, spread))
            flags.set(enabled=False)
            started = time.perf_counter()
            while not all_report(False):
                time.sleep(0.001)
            delays.append(time.perf_counter() - started)
    finally:
        for c in clients:
            c.close()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--refresh", type=float, default=1.0, help="Unleash poll interval, seconds")
    parser.add_argument("--sources", default="envfile,postgres,unleash")
    args = parser.parse_args()
    sources = args.sources.split(",")
    pg = Postgres() if {"postgres", "unleash"} & set(sources) else None
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sandbox = start_sandbox(root)
        try:
            for source in sources:
                folder = root / source
                folder.mkdir()
                procs: list[Proc] = []
                server: Unleash | None = None
                flags: Any = None
                try:
                    if source == "envfile":
                        shared = folder / "fleet.env"
                        procs = _replicas(folder, args.replicas, sandbox.url, [], shared)
                        flags = FlagStore(shared)
                    elif source == "postgres":
                        assert pg is not None
                        url = pg.database()
                        procs = _replicas(
                            folder, args.replicas, sandbox.url, ["--flag-db", url, "--flag-env", "production"]
                        )
                        flags = PostgresFlags(FlagSpec(backend="postgres", database="${DB}"), "production", folder, url)
                    elif source == "unleash":
                        assert pg is not None
                        server = Unleash(pg, folder)
                        spec = FlagSpec(backend="unleash", url=server.url, token="${T}", feature="bench")
                        flags = UnleashFlags(spec, "production", folder, server.admin_token)
                        flags.set(enabled=False, percent=100)
                        os.environ["UNLEASH_API_TOKEN"] = server.client_token("production")
                        procs = _replicas(
                            folder,
                            args.replicas,
                            sandbox.url,
                            [
                                "--unleash-url",
                                server.url,
                                "--unleash-feature",
                                "bench",
                                "--flag-refresh",
                                str(args.refresh),
                            ],
                        )
                    else:
                        raise SystemExit(f"--sources: unknown source {source!r} (envfile, postgres, unleash)")
                    results[source] = _measure(flags, procs, args.flips, args.refresh)
                finally:
                    if flags is not None:
                        flags.close()
                    for proc in procs:
                        proc.stop()
                    if server is not None:
                        server.close()
        finally:
            sandbox.stop()
            if pg is not None:
                pg.close()
    print(
        f"{args.replicas} replicas, {args.flips} flag-offs each: write returned -> every replica reports the flag off"
    )
    for source, delays in results.items():
        note = f" (poll every {args.refresh:g} s)" if source == "unleash" else ""
        print(f"  {source:9} p50 {statistics.median(delays) * 1000:8.1f} ms   max {max(delays) * 1000:8.1f} ms{note}")


if __name__ == "__main__":
    sys.exit(main())
