"""A real Prometheus server for tests: its own folder, a free loopback port, a 1 s scrape interval."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from rollout.util.serving import free_port

BINARY = shutil.which("prometheus") or "/usr/bin/prometheus"


class Prometheus:
    """``prometheus`` scraping ``targets`` (``host:port``) every second; stopped by :meth:`close`."""

    def __init__(self, folder: Path, targets: list[str], interval: str = "1s") -> None:
        if not Path(BINARY).exists():
            if os.environ.get("CI"):
                pytest.fail("prometheus is not installed (.ci/run installs the Debian package)")
            pytest.skip("prometheus is not installed (apt-get install prometheus)")
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = folder / "prometheus.yml"
        listed = ", ".join(f'"{t}"' for t in targets)
        config.write_text(
            f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
            f"scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [{listed}]\n"
        )
        self.log = open(folder / "prometheus.log", "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [
                BINARY,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"prometheus did not start: {(folder / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def wait_for(self, promql: str, timeout: float = 20.0) -> float:
        """Poll until ``promql`` returns a value (the target has been scraped); return it."""
        deadline = time.monotonic() + timeout
        while True:
            result = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}).json()["data"]["result"]
            if result:
                return float(result[0]["value"][1])
            if time.monotonic() > deadline:
                raise AssertionError(f"no data for {promql} within {timeout}s")
            time.sleep(0.2)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
