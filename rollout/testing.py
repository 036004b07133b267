"""Fakes to test the engine without the booking service (or any service): a flag backend in memory,
a metric provider whose readings a test scripts, a target that applies every write at once, and
:func:`fake_context` that builds a run's context from them over a real state store.

.. code-block:: python

    provider = ScriptedProvider({"errors": 0.0})
    with fake_context(playbook, StateStore(tmp / "state.db"), ManualClock(), provider) as ctx:
        outcome = runner.advance(ctx)

Only the edges are fake: the decision, the steps, the kill switch, the audit and the state store
are the engine's own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rollout.checks.client import ServiceClient
from rollout.console import QuietReporter
from rollout.engine.context import Reporter, RunContext
from rollout.engine.state import StateRecords
from rollout.flags import FlagWriteError, check_percent, is_on
from rollout.gates import Reading
from rollout.playbook.environments import Environment, Resolved
from rollout.playbook.model import MetricGate, Playbook
from rollout.providers import MetricSources
from rollout.util.clock import Clock
from rollout.util.errors import MeasurementError

#: nothing listens on the discard port: a fake run's service client fails at once if anything asks it
NOWHERE = "http://127.0.0.1:9"


class MemoryFlags:
    """A flag backend that keeps the flag in memory (a :class:`~rollout.flags.FlagBackend`).
    ``fail`` makes every write raise (a backend that is down); ``writes`` lists each write made."""

    env_file: Path | None = None

    def __init__(self, flag_variable: str = "FEATURE_ON", percent_variable: str = "FEATURE_SHARE") -> None:
        self.flag_variable, self.percent_variable = flag_variable, percent_variable
        self.enabled: bool = False
        self.percent: int | None = None
        self.fail: str | None = None
        self.writes: list[tuple[bool, int | None]] = []
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "the flag in memory"

    def read(self) -> dict[str, str]:
        values = {self.flag_variable: "true" if self.enabled else "false"}
        if self.percent is not None:
            values[self.percent_variable] = str(self.percent)
        return values

    def state(self) -> tuple[bool, int | None]:
        return self.enabled, self.percent

    def set(
        self, enabled: bool | None = None, percent: int | None = None, guard: Callable[[], None] | None = None
    ) -> dict[str, str]:
        check_percent(self.percent_variable, percent)
        with self._lock:
            if guard is not None:
                guard()
            if self.fail:
                raise FlagWriteError(self.fail)
            before = self.read()
            self.enabled = self.enabled if enabled is None else enabled
            self.percent = self.percent if percent is None else percent
            self.writes.append((self.enabled, self.percent))
            return before

    def replace(self, values: Mapping[str, str], guard: Callable[[], None] | None = None) -> dict[str, str]:
        raw = values.get(self.percent_variable)
        enabled = values.get(self.flag_variable)
        return self.set(
            None if enabled is None else is_on(enabled), None if raw in (None, "") else int(raw or 0), guard
        )

    def close(self) -> None:
        """Nothing to release."""


class InstantTarget:
    """A target that applies whatever ``flags`` holds at once (a :class:`~rollout.targets.Target`)."""

    can_confirm = True

    def __init__(self, flags: MemoryFlags) -> None:
        self.flags = flags

    def applied(self) -> tuple[bool | None, int | None, dict[str, Any]]:
        return self.flags.enabled, self.flags.percent, {}


class ScriptedProvider:
    """A metric provider whose readings the test sets: ``values[metric]`` is the value now (a
    number, a :class:`Reading`, an exception to raise, or a function of the percentage);
    ``samples`` the samples each reading carries."""

    def __init__(self, values: dict[str, Any], samples: int = 100) -> None:
        self.values, self.samples = values, samples
        self.asked = 0

    def measure(self, spec: MetricGate, window: float, now: float, percent: int | None) -> Reading:
        self.asked += 1
        value = self.values.get(spec.metric)
        if callable(value):
            value = value(percent)
        if isinstance(value, Exception):
            raise MeasurementError(str(value))
        if isinstance(value, Reading):
            return value
        if value is None:
            return Reading(None, 0, window)
        return Reading(float(value), self.samples, window)


@contextmanager
def fake_context(
    playbook: Playbook,
    state: StateRecords,
    clock: Clock,
    provider: ScriptedProvider,
    flags: MemoryFlags | None = None,
    environment: str | None = None,
    out: Reporter | None = None,
    incidents_dir: Path | None = None,
) -> Iterator[RunContext]:
    """A run's context for ``environment`` (default: the first phase's) of ``playbook``, with every
    provider the playbook names answered by ``provider``, the flag in ``flags`` and a target that
    applies at once. The state store is the caller's (a real one)."""
    phase = playbook.phases[0] if environment is None else playbook.phase_for(environment)
    assert phase is not None, f"no phase runs in {environment}"
    env = Environment(name=environment or phase.environments[0], service_url=NOWHERE)
    flags = flags or MemoryFlags(playbook.flag.variable, playbook.flag.percent_variable)
    service = ServiceClient(NOWHERE, "", timeout=0.5)
    sources = MetricSources(dict.fromkeys([*playbook.providers, "embedded"], provider))
    ctx = RunContext(
        playbook,
        Path("playbook.yaml"),
        phase,
        Resolved(env, {}, ()),
        state,
        flags,
        service,
        clock,
        out or QuietReporter(),
        InstantTarget(flags),
        sources,
        lambda raw: raw,
        incidents_dir=incidents_dir or Path(".rollout/incidents"),
    )
    try:
        yield ctx
    finally:
        service.close()
