"""A test server's process: started with its output in a log file, waited for until a URL answers
200, stopped (terminate, then kill). Prometheus and Alertmanager share it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import IO

import httpx


class ServerProcess:
    """``command`` running, its output in ``log``; :meth:`wait_ready` polls ``ready_url``."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.log_path = log
        self.log: IO[str] = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, ready_url: str, what: str, deadline: float) -> None:
        """Until ``ready_url`` answers 200; stopped, with its log's end, if it dies or ``deadline`` passes."""
        while True:
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{what} did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
