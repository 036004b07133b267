"""A real Alertmanager for tests (Debian's ``prometheus-alertmanager``): its own folder, a free
loopback port, clustering off, one receiver that sends nowhere."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from rollout.util.serving import free_port
from tests.support.requirements_servers import alertmanager_binary, unavailable
from tests.support.serverprocess import ServerProcess

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
        binary = alertmanager_binary()
        if binary is None:
            unavailable("alertmanager")
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        (folder / "alertmanager.yml").write_text(CONFIG)
        self.server = ServerProcess(
            [
                binary,
                f"--config.file={folder / 'alertmanager.yml'}",
                f"--storage.path={folder / 'data'}",
                f"--web.listen-address={self.address}",
                "--cluster.listen-address=",  # no gossip port on every interface
                "--log.level=warn",
            ],
            folder / "alertmanager.log",
        )
        self.server.wait_ready(f"{self.url}/-/ready", "alertmanager", time.monotonic() + 30)

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
        self.server.stop()
