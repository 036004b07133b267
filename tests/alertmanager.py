"""A real Alertmanager for tests (Debian's ``prometheus-alertmanager``): its own folder, a free
loopback port, clustering off, one receiver that sends nowhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollout.util.serving import free_port

BINARY = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"

CONFIG = """\
route:
  receiver: nowhere
  group_wait: 0s
  group_interval: 1s
receivers:
  - name: nowhere
"""


class Alertmanager:
    """``prometheus-alertmanager`` on 127.0.0.1 (no cluster port); stopped by :meth:`close`."""

    def __init__(self, folder: Path) -> None:
        if not Path(BINARY).exists():
            if os.environ.get("CI"):
                pytest.fail("prometheus-alertmanager is not installed (.ci/run installs the Debian package)")
            pytest.skip("prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)")
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        (folder / "alertmanager.yml").write_text(CONFIG)
        self.log = open(folder / "alertmanager.log", "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [
                BINARY,
                f"--config.file={folder / 'alertmanager.yml'}",
                f"--storage.path={folder / 'data'}",
                f"--web.listen-address={self.address}",
                "--cluster.listen-address=",  # no gossip port on every interface
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"alertmanager did not start: {(folder / 'alertmanager.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def fire(self, **labels: str) -> None:
        """Post one firing alert with ``labels`` (as Prometheus would)."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        answer = httpx.post(f"{self.url}/api/v2/alerts", json=[{"labels": labels, "startsAt": now}], timeout=5)
        answer.raise_for_status()

    def silence(self, **matchers: str) -> str:
        """Silence every alert whose labels equal ``matchers`` for an hour; returns the silence's id."""
        now = time.time()
        body: dict[str, Any] = {
            "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in matchers.items()],
            "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
            "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
            "createdBy": "tests",
            "comment": "known",
        }
        answer = httpx.post(f"{self.url}/api/v2/silences", json=body, timeout=5)
        answer.raise_for_status()
        return str(answer.json()["silenceID"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
