"""An engine under test: a project folder, the real service and sandbox, and a driving clock."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from rollout.booking.cohort import bucket
from rollout.console import QuietReporter
from rollout.engine import runner
from rollout.engine.project import Project
from rollout.flags import FlagStore
from rollout.playbook.environments import load_environment
from rollout.util.clock import ManualClock
from tests.support.harness import ADMIN_TOKEN, SANDBOX_TOKEN, Sandbox, Service, base_env, wait_until

GROUP = "whatsapp_notifications"

PLAYBOOK = """\
version: 1
name: engine-test
{flag}gates:
  g:
    window: 30s
    min_samples: 10
    metrics:
      - {{metric: success_rate, target: 95%, alert: 90%}}
{extra_metrics}
watch: {{gate: g, interval: 1s}}
phases:
  - name: production
    environment: production
    steps:
      - kind: configure
        set: {{WHATSAPP_NOTIFICATIONS_ENABLED: "false", WHATSAPP_ROLLOUT_PERCENT: "0"}}
{before_ramp}
      - kind: ramp
        name: ramp
        percentages: [{percentages}]
        hold: {hold}
        interval: 1s
        gate: g
        max_hold: {max_hold}
        on_hold_timeout: {on_hold_timeout}
"""


class DrivingClock(ManualClock):
    """The engine's and the service's clock. A sleep of 0.2 s or more first runs ``on_sleep``
    (customer traffic, a breach, a rollback) and waits until the service has sent what it got,
    then moves time; shorter sleeps are the engine's polls and pass in real time."""

    def __init__(self) -> None:
        super().__init__()
        self.on_sleep: list[Callable[[], None]] = []
        self.sleeps = 0

    def sleep(self, seconds: float) -> None:
        if seconds >= 0.2:
            self.sleeps += 1
            for hook in list(self.on_sleep):
                hook()
        else:
            time.sleep(seconds)
        self.advance(seconds)


def customers_in(percent_low: int, percent_high: int, count: int) -> list[str]:
    """Fresh customer ids whose bucket is in (percent_low, percent_high]."""
    found = []
    while len(found) < count:
        cid = f"c-{uuid.uuid4().hex[:10]}"
        if percent_low < bucket(GROUP, cid) <= percent_high:
            found.append(cid)
    return found


class EngineWorld:
    """One environment 'production' served by a real service, driven by a real engine."""

    def __init__(
        self,
        tmp: Path,
        sandbox: Sandbox,
        percentages: str = "10, 25, 50, 100",
        hold: str = "4s",
        max_hold: str = "3s",
        on_hold_timeout: str = "approve",
        before_ramp: str = "",
        extra_metrics: str = "      - {metric: error_rate, target: 1%, alert: 5%}",
        flag: str = "",
        flag_source: Any = None,
    ) -> None:
        """``flag`` is the playbook's ``flag:`` block (default: the env file); ``flag_source`` is
        where the service reads it (:mod:`rollout.booking.flags`)."""
        self.tmp, self.sandbox = tmp, sandbox
        self.clock = DrivingClock()
        (tmp / "svc").mkdir(parents=True, exist_ok=True)
        self.service = Service(
            tmp / "svc",
            base_env(sandbox.api_url, WHATSAPP_NOTIFICATIONS_ENABLED=False, WHATSAPP_ROLLOUT_PERCENT=0),
            clock=self.clock,
            flag_source=flag_source,
        )
        (tmp / "playbooks").mkdir(exist_ok=True)
        (tmp / "environments").mkdir(exist_ok=True)
        self.playbook = tmp / "playbooks" / "p.yaml"
        self.playbook.write_text(
            PLAYBOOK.format(
                percentages=percentages,
                hold=hold,
                max_hold=max_hold,
                on_hold_timeout=on_hold_timeout,
                before_ramp=before_ramp,
                extra_metrics=extra_metrics,
                flag=flag,
            )
        )
        (tmp / "environments" / "production.yaml").write_text(
            f"name: production\nservice_url: {self.service.url}\nenv_file: {self.service.env_file}\n"
            f"sandbox_url: {sandbox.url}\nsandbox_token: ${{ZAPTRA_SANDBOX_TOKEN}}\n"
            "variables:\n"
            f"  ZAPTRA_API_URL: {sandbox.api_url}\n"
            "  ZAPTRA_API_TOKEN: ${ZAPTRA_API_TOKEN}\n"
            "  ROLLOUT_ADMIN_TOKEN: ${ROLLOUT_ADMIN_TOKEN}\n"
            "  WHATSAPP_TIMEOUT_MS: 2000\n"
        )
        self.project = Project(self.playbook, tmp / "environments", tmp / "state.db")
        self.flags: Any = FlagStore(self.service.env_file)
        if flag:  # the playbook's backend, opened as the engine opens it (needs its tokens set)
            self.flags = None
        self.http = httpx.Client(base_url=self.service.url, timeout=10)
        self.booked = 0

    def environ(self, monkeypatch: Any) -> None:
        monkeypatch.setenv("ZAPTRA_API_TOKEN", SANDBOX_TOKEN)
        monkeypatch.setenv("ZAPTRA_SANDBOX_TOKEN", SANDBOX_TOKEN)
        monkeypatch.setenv("ROLLOUT_ADMIN_TOKEN", ADMIN_TOKEN)
        if self.flags is None:
            self.flags = self.project.flags(
                self.project.playbook(), load_environment("production", self.tmp / "environments")
            )

    def book(self, customers: list[str], phone: str = "+919876543210") -> None:
        """Bookings for ``customers``, then wait until the service has finished with all of them."""
        for cid in customers:
            self.booked += 1
            body = {
                "customer_id": cid,
                "parent_name": "P",
                "child_name": "C",
                "phone": phone,
                "event_name": "E",
                "venue": "V",
                "event_date": "2030-01-01",
                "booking_ref": f"T-{uuid.uuid4().hex[:12]}",
                "amount": "10",
                "payment_method": "UPI",
            }
            assert self.http.post("/api/bookings", json=body).status_code == 201
        wait_until(
            lambda: (o := self.service.metrics(60)["outbox"])["due"] == 0 and o["sending"] == 0,
            timeout=15,
            what="the outbox to drain",
        )

    def traffic(self, per_tick: int = 40) -> Callable[[], None]:
        """A hook: on every engine sleep, ``per_tick`` fresh customers book, spread over the cohort
        bands exactly as their share (1/8 in 0-10 %, 1/8 in 10-25 %, 1/4 in 25-50 %, 1/2 in 50-100 %),
        so every percentage of the ramp sees a known number of samples."""
        unit = max(1, per_tick // 8)
        bands = ((0, 10, unit), (10, 25, unit), (25, 50, 2 * unit), (50, 100, 4 * unit))
        return lambda: self.book([c for low, high, n in bands for c in customers_in(low, high, n)])

    def breach_at(self, percent: int, message: str = "(#131000) Something went wrong") -> None:
        """Customer traffic on every engine sleep, and the provider failing every send once the ramp
        holds ``percent``."""

        def breach() -> None:
            if self.flags.state() == (True, percent):
                self.sandbox.faults(error_rate=1.0, error_message=message)

        self.clock.on_sleep[:0] = [breach]
        self.clock.on_sleep.append(self.traffic(40))

    def advance(self, approve: bool = False) -> runner.RunOutcome:
        with runner.open_context(self.project, "production", self.clock, QuietReporter(), approve=approve) as ctx:
            return runner.advance(ctx)

    def audit(self, action: str | None = None) -> list[dict[str, Any]]:
        state = self.project.state()
        try:
            rows = state.audit_log("production")
        finally:
            state.close()
        return [r for r in rows if action is None or r["action"] == action]

    def env_state(self):
        state = self.project.state()
        try:
            return state.get("production")
        finally:
            state.close()

    def close(self) -> None:
        if self.flags is not None:
            self.flags.close()
        self.http.close()
        self.service.close()


class SteppedClock(ManualClock):
    """An engine's clock the test steps: every wait of ``at_least`` seconds or more (an evaluation
    interval) blocks until the test lets it go (:meth:`step`), then moves time; shorter waits (a
    poll for the target to apply a write) pass at once. The test acts between two evaluations
    knowing exactly where the engine stands."""

    def __init__(self, at_least: float = 0.05) -> None:
        super().__init__()
        self.at_least = at_least
        self._waiting = threading.Semaphore(0)
        self._go = threading.Semaphore(0)

    def sleep(self, seconds: float) -> None:
        if seconds >= self.at_least:
            self._waiting.release()
            if not self._go.acquire(timeout=60):
                raise TimeoutError("the test never let the engine go on")
        self.advance(max(0.0, seconds))

    def waiting(self, timeout: float = 30) -> None:
        """Block until the engine waits (it has finished its evaluation)."""
        if not self._waiting.acquire(timeout=timeout):
            raise TimeoutError("the engine did not come to a wait")

    def step(self, n: int = 1, timeout: float = 30) -> None:
        """Let the engine go on ``n`` times, each time until it waits again."""
        for _ in range(n):
            self._go.release()
            self.waiting(timeout)

    def release(self) -> None:
        """Let the engine run freely from here (every wait passes)."""
        self.at_least = float("inf")
        self._go.release()
