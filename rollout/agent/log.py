"""What an agent says: one line per event, for people or (``--log-format json``) one JSON object per
line, every text through the redactor of the project it concerns."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from rollout.gates import Verdict
from rollout.util.redact import Redactor


class AgentLog:
    """The agent's log: ``event(kind, environment, text, **fields)``."""

    def __init__(self, agent: str, json_lines: bool = False, stream: TextIO | None = None) -> None:
        self.agent, self.json_lines = agent, json_lines
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()

    def event(
        self, kind: str, text: str, environment: str | None = None, redactor: Redactor | None = None, **fields: Any
    ) -> None:
        """One event: what happened (``kind``), in words (``text``), with its fields."""
        redactor = redactor or Redactor()
        text = redactor.text(text)
        if self.json_lines:
            record = {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
                "agent": self.agent,
                "event": kind,
                **({"environment": environment} if environment else {}),
                "message": text,
                **redactor.value(fields),
            }
            line = json.dumps(record, default=str, sort_keys=False)
        else:
            where = f" {environment}:" if environment else ""
            line = f"{time.strftime('%H:%M:%S')} {self.agent}{where} {text}"
        with self._lock:
            print(line, file=self._stream, flush=True)


class EnvReporter:
    """A run's :class:`~rollout.engine.context.Reporter` inside an agent: its lines go to the agent's
    log under the environment's name (the live 'waiting' line is not logged: the verdicts are)."""

    def __init__(self, log: AgentLog, environment: str, redactor: Redactor) -> None:
        self.log, self.environment, self.redactor = log, environment, redactor

    def _say(self, kind: str, text: str, **fields: Any) -> None:
        self.log.event(kind, text, self.environment, self.redactor, **fields)

    def step(self, index: int, total: int, label: str, kind: str) -> None:
        self._say("step", f"step {index + 1}/{total} {kind} {label}", step=label, step_kind=kind)

    def line(self, text: str, style: str = "") -> None:
        self._say("line", text.strip())

    def check(self, name: str, ok: bool, detail: str) -> None:
        self._say("check", f"{'✓' if ok else '✗'} {name}: {detail}", ok=ok)

    def verdict(self, label: str, verdict: Verdict) -> None:
        self._say("verdict", f"{verdict.verdict.upper()} {label}: {verdict.summary}", verdict=verdict.verdict)

    @contextlib.contextmanager
    def progress(self, total: int, description: str) -> Iterator[Callable[[int], None]]:
        yield lambda n: None

    def waiting(self, text: str) -> None:
        """Not logged: a line per evaluation would drown the verdicts."""

    def done_waiting(self) -> None:
        """Nothing to clear."""
