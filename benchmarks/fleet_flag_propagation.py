"""Flag-off propagation to every replica of a fleet following one PostgreSQL flag row.

Three `rollout serve --flag-db ... --flag-env production` processes on one database (a real
PostgreSQL started here in a temporary folder); the engine's postgres backend flips the flag on and
off 20 times; for each flag-off, the time from the write's commit until every replica reports the
flag off on its own /api/whatsapp/metrics. Aim: max <= 250 ms.

Usage: python benchmarks/fleet_flag_propagation.py [--flips 20] [--replicas 3]
Needs the PostgreSQL server binaries (Debian package ``postgresql``) and the test extras installed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._procs import ADMIN_TOKEN, SANDBOX_TOKEN, Proc, start_sandbox
from rollout.flags.postgres import PostgresFlags
from rollout.playbook.model import FlagSpec
from rollout.util.envfile import write_env_file
from rollout.util.serving import free_port
from tests.postgres import Postgres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=3)
    args = parser.parse_args()
    pg = Postgres()
    procs: list[Proc] = []
    try:
        url = pg.database()
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            sandbox = start_sandbox(folder)
            procs.append(sandbox)
            for i in range(args.replicas):
                env_file = folder / f"r{i}.env"
                write_env_file(
                    env_file,
                    {
                        "WHATSAPP_NOTIFICATIONS_ENABLED": "false",
                        "ZAPTRA_API_URL": f"{sandbox.url}/api/wpbox",
                        "ZAPTRA_API_TOKEN": SANDBOX_TOKEN,
                        "ROLLOUT_ADMIN_TOKEN": ADMIN_TOKEN,
                    },
                )
                port = free_port()
                procs.append(
                    Proc(
                        [
                            "serve",
                            "--port",
                            str(port),
                            "--env-file",
                            str(env_file),
                            "--db",
                            str(folder / f"r{i}.db"),
                            "--flag-db",
                            url,
                            "--flag-env",
                            "production",
                            "--replica-id",
                            f"r{i}",
                        ],
                        f"http://127.0.0.1:{port}",
                        folder / f"r{i}.log",
                    )
                )
            flags = PostgresFlags(FlagSpec(backend="postgres", database="${FLAG_DB_URL}"), "production", folder, url)
            clients = [httpx.Client(base_url=p.url, timeout=5) for p in procs[1:]]

            def all_report(enabled: bool) -> bool:
                return all(c.get("/api/whatsapp/metrics?window=1").json()["flag_enabled"] is enabled for c in clients)

            delays = []
            for _ in range(args.flips):
                flags.set(enabled=True, percent=100)
                while not all_report(True):
                    time.sleep(0.002)
                time.sleep(0.2)
                started = time.perf_counter()
                flags.set(enabled=False)
                while not all_report(False):
                    time.sleep(0.001)
                delays.append(time.perf_counter() - started)
            for c in clients:
                c.close()
            flags.close()
            print(
                f"{args.replicas} replicas, {args.flips} flag-offs: every replica reports the flag off "
                f"p50 {statistics.median(delays) * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms "
                f"(aim: max <= 250 ms)"
            )
    finally:
        for proc in procs:
            proc.stop()
        pg.close()


if __name__ == "__main__":
    sys.exit(main())
