"""``rollout demo``: the whole seed plan on one machine, on a compressed timeline.

Starts the sandbox and a service per environment on free local ports, then runs the shipped
playbook through dev, staging and production (10 -> 25 -> 50 -> 100 %) while simulated customers
book at a steady rate. With ``breach=True`` the provider starts failing once the ramp holds 25 %,
and the engine turns the flag off by itself.
"""

from __future__ import annotations

import importlib.resources
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from rollout.console import ConsoleReporter
from rollout.demo.stack import Stack
from rollout.engine import runner
from rollout.engine.project import Project
from rollout.flags import FlagStore
from rollout.targets.embedded.bookings import synthetic_booking
from rollout.util.clock import SystemClock

#: the compressed timeline: every ${...} the shipped playbook and environments read
DEMO_TIMINGS = {
    "ROLLOUT_GATE_WINDOW": "10s",
    "ROLLOUT_MIN_SAMPLES": "10",
    "ROLLOUT_BREAKER_WINDOW": "1m",
    "ROLLOUT_PREPROD_WINDOW": "1m",
    "ROLLOUT_WATCH_INTERVAL": "1s",
    "ROLLOUT_RAMP_HOLD": "4s",
    "ROLLOUT_RAMP_INTERVAL": "0.5s",
    "ROLLOUT_MAX_HOLD": "10s",
    "ROLLOUT_SCENARIO_WITHIN": "20s",
    "ROLLOUT_LOAD_BOOKINGS": "300",
    # the whole send (it bounds the answer too): room for a loaded 2-core machine under the load step
    "WHATSAPP_TIMEOUT_MS": "2000",
    "WHATSAPP_BREAKER_RESET_MS": "2000",
    "WHATSAPP_RETRY_BASE_MS": "100",
}


@dataclass
class Traffic:
    """Customers booking at ``rate`` per second against one service, in a background thread."""

    url: str
    rate: float
    booked: int = 0
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    on_tick: list = field(default_factory=list)

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            t0 = time.monotonic()
            i = 0
            while not self._stop.is_set():
                due = t0 + i / self.rate
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                ref = uuid.uuid4().hex[:12]
                body = synthetic_booking(f"DEMO-{ref}", f"customer-{ref}", event="Summer Camp", amount="1200")
                try:
                    ok = client.post("/api/bookings", json=body).status_code == 201
                except httpx.HTTPError:
                    ok = False
                self.booked += ok
                self.errors += not ok
                for tick in self.on_tick:
                    tick()
                i += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


@dataclass
class Breach:
    """Turns the sandbox bad once the production ramp has held ``at_percent`` for ``after`` seconds."""

    stack: Stack
    flags: FlagStore
    at_percent: int = 25
    after: float = 1.0
    seen_at: float | None = None
    started_at: float | None = None

    def tick(self) -> None:
        if self.started_at is not None:
            return
        enabled, percent = self.flags.state()
        if enabled and percent == self.at_percent:
            now = time.time()
            self.seen_at = self.seen_at or now
            if now - self.seen_at >= self.after:
                self.started_at = time.time()
                self.stack.faults(error_rate=1.0)


def copy_shipped(dest: Path) -> Path:
    """Copy the shipped playbook and environments into ``dest`` and return it.

    They are package data (``rollout/demo/shipped/``), read with :mod:`importlib.resources`, so the
    demo runs from any folder: from a checkout, where ``shipped/playbooks`` and ``shipped/environments``
    are symlinks to the repository's own ``playbooks/`` and ``environments/`` (what people read and
    edit; a build follows the links), or from an installed wheel, zipped or not. The demo runs the
    copy, which stays beside its state and logs as the record of what ran."""
    shipped = importlib.resources.files("rollout.demo").joinpath("shipped")
    for folder in ("playbooks", "environments"):
        (dest / folder).mkdir(parents=True, exist_ok=True)
        for item in shipped.joinpath(folder).iterdir():
            if item.name.endswith(".yaml"):
                (dest / folder / item.name).write_bytes(item.read_bytes())
    return dest


def make_git_repo(folder: Path) -> Path:
    """A throwaway project repository with main, staging and the feature branch, and a bare remote."""
    import git

    remote = git.Repo.init(folder / "remote.git", bare=True, initial_branch="main")
    repo = git.Repo.init(folder / "project", initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "rollout demo")
        config.set_value("user", "email", "demo@rollout.invalid")
    (folder / "project" / "README.md").write_text("Nibog booking system\n")
    repo.index.add(["README.md"])
    repo.index.commit("Booking system")
    repo.create_remote("origin", str(remote.working_dir))
    repo.git.branch("staging")
    repo.git.checkout("-b", "feature/whatsapp-integration")
    (folder / "project" / "whatsapp.txt").write_text("WhatsApp booking confirmations via Zaptra\n")
    repo.index.add(["whatsapp.txt"])
    repo.index.commit("Add WhatsApp integration for booking confirmations")
    repo.git.checkout("main")
    repo.git.push("origin", "main", "staging", "feature/whatsapp-integration")
    return folder / "project"


def run_demo(folder: Path | None, breach: bool, rate: float, out: ConsoleReporter) -> int:
    """Run the demo with the shipped playbook and environments (copied into ``folder``); returns the
    exit code (0 when everything behaved as the demo expects)."""
    folder = folder or Path(".rollout") / "demo" / datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = folder.resolve()
    started = time.monotonic()
    console = out.console
    console.print(
        f"[bold]rollout demo[/bold]{' with a provider breach at 25%' if breach else ''}: state and logs in {folder}"
    )
    saved = dict(os.environ)
    stack = Stack(folder)
    traffic: Traffic | None = None
    try:
        stack.start(service_env={"WHATSAPP_TIMEOUT_MS": DEMO_TIMINGS["WHATSAPP_TIMEOUT_MS"]})
        os.environ.update(DEMO_TIMINGS)
        os.environ.update(stack.engine_environ())
        out.redactor = out.redactor.with_secrets([stack.sandbox_token, stack.admin_token])
        console.print(
            f"sandbox {stack.url('sandbox')}; services: " + ", ".join(f"{e} {stack.url(e)}" for e in stack.environments)
        )
        files = copy_shipped(folder / "shipped")
        project = Project(
            files / "playbooks" / "whatsapp.yaml",
            files / "environments",
            folder / "state.db",
            repo_path=make_git_repo(folder / "git"),
        )
        console.print(f"playbook: {project.playbook_path}; environments: {project.environments_dir}")
        console.print(f"git: promotions happen in {project.repo_path} (remote {folder / 'git' / 'remote.git'})")
        clock = SystemClock()
        outcome = None
        for env in stack.environments:
            console.rule(f"phase {env}")
            if env == "production":
                traffic = Traffic(stack.url("production"), rate)
                flags = FlagStore(stack.env_file("production"))
                breach_driver = Breach(stack, flags) if breach else None
                if breach_driver:
                    traffic.on_tick.append(breach_driver.tick)
                traffic.start()
                console.print(f"customers are booking at {rate:g}/s in production")
            with runner.open_context(project, env, clock, out, approve=True) as ctx:
                outcome = runner.advance(ctx)
            style = "green" if outcome.exit_code == 0 else "red"
            console.print(f"[{style}]{outcome.status}[/{style}]: ", end="")
            console.print(out.redactor.text(outcome.message), markup=False)
            if outcome.exit_code != 0:
                break
        if traffic is not None:
            time.sleep(0.5)
            traffic.stop()
        expected = "rolled_back" if breach else "completed"
        ok = outcome is not None and outcome.phase == "production" and outcome.status == expected
        if breach and traffic is not None:
            _breach_summary(console, stack, project, breach_driver, outcome)
        console.rule("done")
        console.print(
            f"{'as expected' if ok else 'NOT as expected'}: production ended {outcome.status if outcome else '-'}"
            f" in {time.monotonic() - started:.1f}s"
        )
        console.print(f"state: {folder / 'state.db'}  (rollout status --state {folder / 'state.db'})")
        console.print(f"logs:  {folder / 'logs'}")
        return 0 if ok else 1
    finally:
        if traffic is not None:
            traffic.stop()
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)


def _breach_summary(console, stack: Stack, project: Project, breach, outcome) -> None:  # noqa: ANN001
    if breach is None or breach.started_at is None or outcome.flag_off is None:
        console.print("[red]the breach did not happen as planned[/red]")
        return
    headers = {"Authorization": f"Bearer {stack.sandbox_token}"}
    stats = httpx.get(f"{stack.url('sandbox')}/sandbox/stats", headers=headers, timeout=10).json()
    metrics = httpx.get(f"{stack.url('production')}/api/whatsapp/metrics?window=600", timeout=10).json()
    console.print(
        f"provider failing from +0.00s; flag off after [bold]{outcome.flag_off.at - breach.started_at:.2f}s"
        f"[/bold]; provider errors answered: {stats['errors']}; "
        f"confirmations sent to the fallback outbox: {metrics['fallbacks']}"
    )
