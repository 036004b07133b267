"""A real Prometheus server for tests: its own folder, a free loopback port, a 1 s scrape interval."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from rollout.util.serving import free_port
from tests.support.requirements_servers import prometheus_binary, unavailable
from tests.support.serverprocess import ServerProcess


class Prometheus:
    """``prometheus`` scraping ``targets`` (``host:port``) every second; stopped by :meth:`close`.
    ``rules`` (a rule file's YAML) are evaluated every ``interval``; ``alertmanager`` (``host:port``)
    is where their alerts are sent."""

    def __init__(
        self,
        folder: Path,
        targets: list[str],
        interval: str = "1s",
        rules: str | None = None,
        alertmanager: str | None = None,
    ) -> None:
        binary = prometheus_binary()
        if binary is None:
            unavailable("prometheus")
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = folder / "prometheus.yml"
        listed = ", ".join(f'"{t}"' for t in targets)
        config.write_text(
            f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
            f"scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [{listed}]\n"
        )
        if rules is not None:
            (folder / "rules.yml").write_text(rules)
            with config.open("a") as more:
                more.write(f"rule_files: [{folder / 'rules.yml'}]\n")
        if alertmanager is not None:
            with config.open("a") as more:
                more.write(
                    f'alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ["{alertmanager}"]\n'
                )
        self.server = ServerProcess(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            folder / "prometheus.log",
        )
        self.proc, self.log = self.server.proc, self.server.log
        deadline = time.monotonic() + 60
        self.server.wait_ready(f"{self.url}/-/ready", "prometheus", deadline)
        self.targets = targets
        self._wait_scraped(deadline)

    def _wait_scraped(self, deadline: float) -> None:
        """Block until every target has been scraped once: Prometheus 2.42 hands static targets to its
        scrape manager only after its discovery throttle (5 s), and a test's first query must not race it."""
        while True:
            try:
                active = httpx.get(f"{self.url}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
            except (httpx.HTTPError, KeyError, ValueError):
                active = []
            scraped = {t["labels"].get("instance") for t in active if not t["lastScrape"].startswith("0001")}
            if scraped >= set(self.targets):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                message = f"prometheus never scraped {self.targets}; {self.diagnosis()}"
                self.close()
                raise RuntimeError(message)
            time.sleep(0.1)

    def wait_for(self, promql: str, timeout: float = 20.0) -> float:
        """Poll until ``promql`` returns a value (the target has been scraped); return it."""
        deadline = time.monotonic() + timeout
        while True:
            result = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}).json()["data"]["result"]
            if result:
                return float(result[0]["value"][1])
            if time.monotonic() > deadline:
                raise AssertionError(f"no data for {promql} within {timeout}s; {self.diagnosis()}")
            time.sleep(0.2)

    def diagnosis(self) -> str:
        """What Prometheus says about its targets and what it logged: for a failing wait's message."""
        try:
            targets = httpx.get(f"{self.url}/api/v1/targets").json()["data"]["activeTargets"]
            seen = [(t["scrapeUrl"], t["health"], t["lastError"], t["lastScrape"]) for t in targets]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            seen = [repr(exc)]
        log = self.log.name
        return f"targets {seen}; log: {Path(log).read_text()[-1500:]}"

    def close(self) -> None:
        self.server.stop()
