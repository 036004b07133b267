"""Flag-off propagation to every replica of a fleet, by where the flag lives, in one run.

For each source, three ``rollout serve`` processes follow one flag: the same env file (the
``envfile`` backend), a PostgreSQL flag row (``--flag-db``, LISTEN/NOTIFY), or an Unleash feature
(``--unleash-url``, the Unleash SDK polling every ``--refresh`` seconds); the engine's backend for
that source flips the flag on and off 20 times, and for each flag-off the time from the write's
return until every replica reports the flag off on its own /api/whatsapp/metrics is taken.
On Unleash the flag-offs alternate, on the same replicas in the same run: polling alone, and with
the hint the engine sends after its own flag-off (``POST /api/whatsapp/flag/refresh`` to each
replica, :mod:`rollout.engine.hints`), so the two figures stand side by side.
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
from rollout.engine import hints
from rollout.flags.envfile import FlagStore
from rollout.flags.postgres import PostgresFlags
from rollout.flags.unleash import UnleashFlags
from rollout.playbook.model import FlagSpec
from rollout.targets.embedded import EmbeddedTarget
from tests.support.postgres import Postgres
from tests.support.unleash import Unleash

HINT_TOKEN = "bench-hint-token"


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
            ROLLOUT_HINT_TOKEN=HINT_TOKEN,
        )[0]
        for i in range(n)
    ]


def _measure(
    flags: Any, replicas: list[Proc], flips: int, spread: float, modes: tuple[str, ...] = ("poll",)
) -> dict[str, list[float]]:
    """Each flag-off lands a random 0.2 to 0.2 + ``spread`` s after every replica reported the flag
    on: a polling source would otherwise be measured at one phase of its poll only. ``modes``
    alternate flip by flip: ``poll`` (the write alone), ``hint`` (the write, then the engine's hint)."""
    rng = random.Random(7)
    clients = [httpx.Client(base_url=p.url, timeout=5) for p in replicas]

    def all_report(enabled: bool) -> bool:
        return all(c.get("/api/whatsapp/metrics?window=1").json()["flag_enabled"] is enabled for c in clients)

    delays: dict[str, list[float]] = {mode: [] for mode in modes}
    try:
        for flip in range(flips * len(modes)):
            mode = modes[flip % len(modes)]
            flags.set(enabled=True, percent=100)
            while not all_report(True):
                time.sleep(0.002)
            time.sleep(0.2 + rng.uniform(0, spread))
            flags.set(enabled=False)
            started = time.perf_counter()
            if mode == "hint":
                hints.send([p.url for p in replicas], HINT_TOKEN, EmbeddedTarget.hint_request)
            while not all_report(False):
                time.sleep(0.001)
            delays[mode].append(time.perf_counter() - started)
    finally:
        for c in clients:
            c.close()
    return delays


def _p99(values: list[float]) -> float:
    """The 99th percentile, nearest rank (with 20 values: the largest)."""
    ordered = sorted(values)
    return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]


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
                    if source == "unleash":
                        both = _measure(flags, procs, args.flips, args.refresh, ("poll", "hint"))
                        results["unleash"], results["unleash+hint"] = both["poll"], both["hint"]
                    else:
                        results[source] = _measure(flags, procs, args.flips, args.refresh)["poll"]
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
    notes = {
        "unleash": f" (poll every {args.refresh:g} s)",
        "unleash+hint": " (the same replicas, flips alternating: the engine's hint after the write)",
    }
    for source, delays in results.items():
        print(
            f"  {source:12} p50 {statistics.median(delays) * 1000:8.1f} ms   p99 {_p99(delays) * 1000:8.1f} ms   "
            f"max {max(delays) * 1000:8.1f} ms{notes.get(source, '')}"
        )


if __name__ == "__main__":
    sys.exit(main())
