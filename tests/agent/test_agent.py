"""The always-on agent, as people run it: real ``rollout agent`` processes, a real state store
(SQLite, or PostgreSQL shared by several agents), real services, the CLI a person types."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rollout.engine.project import Project
from rollout.util.clock import SystemClock
from tests.gates.test_metric_roles import PLAYBOOK
from tests.support.agents import AgentProcess, Following, audit, cli, owner
from tests.support.flagservice import TOKEN, FlagService
from tests.support.harness import wait_until

pytestmark = pytest.mark.slow

ENV = {"FLAG_TOKEN": TOKEN}


def flag_project(
    folder: Path,
    service: FlagService,
    hold: str = "0.4s",
    state: str | None = None,
    env: str = "production",
    own_flag: bool = False,
) -> Project:
    """A team's service behind the http flag backend, ramped 10 -> 100 % on its error rates; with
    ``own_flag`` the environment has a flag of its own on the service (``/admin/flags/ENV``), so
    several environments sharing it never see each other's writes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "environments").mkdir(exist_ok=True)
    (folder / "environments" / f"{env}.yaml").write_text(f"name: {env}\nservice_url: {service.url}\n")
    book = folder / "ops.yaml"
    text = (
        PLAYBOOK.format(watched="window: 10s")
        .replace("max_hold: 5s", "max_hold: 60s")
        .replace("hold: 0.4s", f"hold: {hold}")
    )
    if own_flag:
        text = text.replace("url: /admin/flag,", f"url: /admin/flags/{env},").replace(
            "url: /admin/flag\n", f"url: /admin/flags/{env}\n"
        )
    book.write_text(
        text.replace("environment: production", f"environment: {env}").replace("name: production", f"name: {env}")
    )
    url = state if state and state.startswith("postgresql://") else None
    return Project(
        book, folder / "environments", Path(state) if state and not url else folder / "state.db", state_url=url
    )


def ramps(project: Project, environment: str = "production") -> list[int]:
    return [a["detail"]["percent"] for a in audit(project, environment) if a["action"] == "ramp"]


def test_advance_is_handed_to_the_agent_and_followed_ctrl_c_leaves_it_running_and_rollback_wins(flag_service, tmp_path):
    service = flag_service.reset()
    project = flag_project(tmp_path, service, hold="60s")
    agent = AgentProcess(tmp_path, "agent-a", project, env=ENV)
    try:
        follower = Following(cli(project, "advance", "--env", "production", env=ENV, popen=True))
        follower.wait_for("PASS ramp #2 at 10%")
        assert service.state["percent"] == 10 and service.state["enabled"]
        assert owner(project, "production") == "agent-a"
        follower.proc.send_signal(signal.SIGINT)  # Ctrl-C in the terminal that follows
        assert follower.end() == 130, follower.said
        assert "handed to it and followed here" in follower.said and "flag on for 10%" in follower.said
        assert "stopped following; the run goes on in the agent agent-a" in follower.said
        time.sleep(1.5)  # the run goes on without its follower: evaluations keep coming, still at 10 %
        assert owner(project, "production") == "agent-a" and service.state["percent"] == 10
        status = cli(project, "status", env=ENV)
        assert "agent agent-a" in status.stdout, status.stdout
        stop = cli(project, "rollback", "--env", "production", "--reason", "a person says stop", env=ENV)
        assert stop.returncode == 0, stop.stderr
        assert service.state["enabled"] is False
        wait_until(lambda: owner(project, "production") is None, timeout=15, what="the agent to let go")
        entries = audit(project, "production")
        actions = [a["action"] for a in entries]
        # the rollback marks the environment before it writes; the agent stops at its next look
        assert actions.index("flag_intent", actions.index("ramp")) < actions.index("agent_run_ended")
        ended = next(a for a in entries if a["action"] == "agent_run_ended")
        assert ended["detail"]["status"] == "rolled_back" and ended["actor"] == "agent-a"
        assert ramps(project) == [10]  # nothing was written after the rollback
        assert {a["actor"] for a in entries if a["action"] in ("ramp", "step_started")} == {"agent-a"}
    finally:
        assert agent.stop() == 0


def test_a_run_handed_over_goes_to_its_end_and_the_terminal_exits_with_its_code(flag_service, tmp_path):
    service = flag_service.reset()
    project = flag_project(tmp_path, service)
    agent = AgentProcess(tmp_path, "agent-a", project, env=ENV)
    try:
        done = cli(project, "advance", "--env", "production", env=ENV)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "completed: phase production completed in production" in done.stdout
        assert ramps(project) == [10, 100] and (service.state["enabled"], service.state["percent"]) == (True, 100)
        again = cli(project, "advance", "--env", "production", env=ENV)
        assert again.returncode == 0 and "nothing to do" in again.stdout
    finally:
        agent.stop()
    # with no agent serving it, advance runs in the terminal as it always did
    service.reset()
    alone = flag_project(tmp_path / "alone", service)
    done = cli(alone, "advance", "--env", "production", env=ENV)
    assert done.returncode == 0 and "handed" not in done.stdout


def test_one_agent_on_sqlite_restarted_mid_ramp_resumes_every_environment(tmp_path):
    services = [FlagService(), FlagService()]
    try:
        state = tmp_path / "state.db"
        projects = [
            flag_project(tmp_path / name, svc, hold="3s", state=str(state), env=name)
            for name, svc in zip(("alpha", "beta"), services, strict=True)
        ]
        config = tmp_path / "agent.yaml"
        config.write_text(
            f"state: {state}\nprojects:\n"
            + "".join(f"  - playbook: {p.playbook_path}\n    environments: {p.environments_dir}\n" for p in projects)
        )
        first = AgentProcess(tmp_path, "agent-1", config=config, env=ENV)
        followers = [
            cli(p, "advance", "--env", name, env=ENV, popen=True)
            for p, name in zip(projects, ("alpha", "beta"), strict=True)
        ]
        for svc in services:
            wait_until(lambda svc=svc: svc.state["percent"] == 10, timeout=30, what="both at 10 %")
        first.kill()  # kill -9, mid-hold
        second = AgentProcess(tmp_path, "agent-2", config=config, env=ENV)
        try:
            for follower in followers:
                said, _ = follower.communicate(timeout=60)
                assert follower.returncode == 0 and "completed" in said, said
            for project, name in zip(projects, ("alpha", "beta"), strict=True):
                assert ramps(project, name) == [10, 100]  # resumed at 10 %, not applied again
                took = [a for a in audit(project, name) if a["action"] == "agent_took_over"]
                assert [t["actor"] for t in took] == ["agent-1", "agent-2"]
                assert "lease ran out" in took[1]["detail"]["why"] and took[1]["detail"]["previous_owner"] == "agent-1"
        finally:
            second.stop()
    finally:
        for svc in services:
            svc.server.stop()


# --- several agents on PostgreSQL --------------------------------------------------------------------


def test_sigstop_of_the_owner_the_other_takes_over_and_the_woken_one_writes_nothing(flag_service, postgres, tmp_path):
    service = flag_service.reset()
    project = flag_project(tmp_path, service, hold="60s", state=postgres.database())
    a = AgentProcess(tmp_path, "agent-a", project, env=ENV)
    b = AgentProcess(tmp_path, "agent-b", project, env=ENV)
    try:
        cli(project, "advance", "--env", "production", env=ENV, popen=True)
        wait_until(lambda: service.state["percent"] == 10 and owner(project, "production"), timeout=30, what="10 %")
        first = {"agent-a": a, "agent-b": b}[owner(project, "production") or ""]
        other = b if first is a else a
        first.signal(signal.SIGSTOP)  # frozen, its connections open
        wait_until(lambda: owner(project, "production") == other.name, timeout=20, what="the take-over")
        took = wait_until(
            lambda: [
                e for e in audit(project, "production") if e["action"] == "agent_took_over" and e["actor"] == other.name
            ],
            timeout=20,
            what="the new owner's first look",
        )
        taken_at = took[0]["ts"]
        service.state["bad"] = 0.5  # a breach during the take-over: the new owner turns the flag off
        wait_until(lambda: service.state["enabled"] is False, timeout=30, what="the flag off")
        first.signal(signal.SIGCONT)
        wait_until(lambda: first.events("lost"), timeout=20, what="the woken agent to find its lease gone")
        time.sleep(2)  # a few of its intervals: had it written anything, it would be there now
        assert (service.state["enabled"], service.state["percent"]) == (False, 10)
        late = [e for e in audit(project, "production") if e["actor"] == first.name and e["ts"] >= taken_at]
        assert late == []
        off = next(e for e in audit(project, "production") if e["action"] == "flag_off")
        assert off["actor"] == other.name
    finally:
        for agent in (a, b):
            agent.signal(signal.SIGCONT)
            agent.stop()


def test_sigterm_hands_over_at_once_and_nothing_is_applied_twice(flag_service, postgres, tmp_path):
    service = flag_service.reset()
    project = flag_project(tmp_path, service, hold="4s", state=postgres.database())
    a = AgentProcess(tmp_path, "agent-a", project, env=ENV)
    b = AgentProcess(tmp_path, "agent-b", project, env=ENV)
    try:
        follower = cli(project, "advance", "--env", "production", env=ENV, popen=True)
        wait_until(lambda: service.state["percent"] == 10 and owner(project, "production"), timeout=30, what="10 %")
        first = {"agent-a": a, "agent-b": b}[owner(project, "production") or ""]
        other = b if first is a else a
        stopped = time.monotonic()
        first.signal(signal.SIGTERM)
        wait_until(lambda: owner(project, "production") == other.name, timeout=20, what="the hand-over")
        handed = time.monotonic() - stopped
        print(f"SIGTERM -> the other agent owns the environment: {handed:.2f}s")
        assert first.proc.wait(30) == 0
        said, _ = follower.communicate(timeout=60)
        assert follower.returncode == 0 and "completed" in said, said
        entries = audit(project, "production")
        assert ramps(project) == [10, 100]
        released = next(e for e in entries if e["action"] == "agent_released")
        assert released["actor"] == first.name and "SIGTERM" in released["detail"]["why"]
        took = [e for e in entries if e["action"] == "agent_took_over" and e["actor"] == other.name]
        assert took and "released" in took[-1]["detail"]["why"]
    finally:
        a.stop()
        b.stop()


@pytest.mark.timeout(300)
def test_ownership_spreads_over_the_agents_and_a_dead_ones_environments_are_owned_again(
    flag_service, postgres, tmp_path
):
    service = flag_service.reset()
    url = postgres.database()
    names = [f"env{i}" for i in range(6)]
    # each environment has a flag of its own: one's configure never sees another's 10 %
    projects = [flag_project(tmp_path / n, service, hold="120s", state=url, env=n, own_flag=True) for n in names]
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"state: {url}\nprojects:\n"
        + "".join(f"  - playbook: {p.playbook_path}\n    environments: {p.environments_dir}\n" for p in projects)
    )
    agents = [AgentProcess(tmp_path, f"agent-{i}", config=config, env=ENV) for i in range(3)]
    try:
        for p, name in zip(projects, names, strict=True):
            cli(p, "advance", "--env", name, env=ENV, popen=True)
        wait_until(
            lambda: all(ramps(p, n) == [10] for p, n in zip(projects, names, strict=True)),
            timeout=90,
            what="every environment at 10 %",
        )
        assert {n: service.named[n] for n in names} == {n: {"enabled": True, "percent": 10} for n in names}
        assert service.state["percent"] == 0  # the shared flag was never written

        def shares() -> dict[str, int]:
            held = [owner(projects[0], n) for n in names]
            return {a.name: held.count(a.name) for a in agents}

        wait_until(lambda: sorted(shares().values()) == [2, 2, 2], timeout=30, what="an even spread")
        dead = agents[0]
        orphans = [n for n in names if owner(projects[0], n) == dead.name]
        dead.kill()
        killed = time.monotonic()
        wait_until(
            lambda: all(owner(projects[0], n) not in (None, dead.name) for n in orphans),
            timeout=30,
            what="the dead agent's environments owned again",
        )
        print(f"kill -9 -> every orphan owned again: {time.monotonic() - killed:.2f}s (lease 3s)")
        for n in orphans:  # the new owner evaluates where the dead one left it
            wait_until(lambda n=n: _evaluated_by_other(projects[0], n, dead.name), timeout=30, what=f"{n} evaluated")
        assert all(ramps(p, n) == [10] for p, n in zip(projects, names, strict=True))  # nothing applied twice
        assert all(service.named[n] == {"enabled": True, "percent": 10} for n in names)
    finally:
        for agent in agents:
            agent.stop()


def _evaluated_by_other(project: Project, environment: str, dead: str) -> bool:
    took = [a for a in audit(project, environment) if a["action"] == "agent_took_over" and a["actor"] != dead]
    if not took:
        return False
    state = project.state()
    try:
        return any(v["ts"] > took[-1]["ts"] for v in state.verdicts(environment))
    finally:
        state.close()


def test_kill_9_of_the_owner_during_a_hold_the_survivor_turns_the_flag_off(sandbox, postgres, tmp_path):
    from tests.support.agents import state_of
    from tests.support.engine_harness import PLAYBOOK as ENGINE_PLAYBOOK
    from tests.support.engine_harness import customers_in
    from tests.support.harness import ADMIN_TOKEN, SANDBOX_TOKEN, Service, base_env

    (tmp_path / "svc").mkdir()
    service = Service(
        tmp_path / "svc",
        base_env(sandbox.api_url, WHATSAPP_NOTIFICATIONS_ENABLED=False, WHATSAPP_ROLLOUT_PERCENT=0),
        clock=SystemClock(),  # the agents judge the service's windows in real time
    )
    url = postgres.database()
    try:
        (tmp_path / "environments").mkdir()
        (tmp_path / "environments" / "production.yaml").write_text(
            f"name: production\nservice_url: {service.url}\nenv_file: {service.env_file}\n"
            "variables:\n"
            f"  ZAPTRA_API_URL: {sandbox.api_url}\n"
            "  ZAPTRA_API_TOKEN: ${ZAPTRA_API_TOKEN}\n"
            "  ROLLOUT_ADMIN_TOKEN: ${ROLLOUT_ADMIN_TOKEN}\n"
            "  WHATSAPP_TIMEOUT_MS: 2000\n"
        )
        book = tmp_path / "p.yaml"
        book.write_text(
            ENGINE_PLAYBOOK.format(
                flag="",
                extra_metrics="",
                before_ramp="",
                percentages="10, 50, 100",
                hold="120s",
                max_hold="60s",
                on_hold_timeout="fail",
            )
            .replace("window: 30s", "window: 5s")
            .replace("min_samples: 10", "min_samples: 5")
            .replace("interval: 1s\n        gate", "interval: 0.5s\n        gate")
        )
        project = Project(book, tmp_path / "environments", tmp_path / "state.db", state_url=url)
        env = {"ZAPTRA_API_TOKEN": SANDBOX_TOKEN, "ROLLOUT_ADMIN_TOKEN": ADMIN_TOKEN}
        agents = [AgentProcess(tmp_path, f"agent-{x}", project, env=env) for x in "ab"]
        stop = threading.Event()
        booked = iter(range(1, 10**6))

        def traffic() -> None:  # customers booking all along, about 10/s in the 10 % cohort
            while not stop.is_set():
                for cid in customers_in(0, 10, 2) + customers_in(10, 100, 2):
                    try:
                        service.book(next(booked), customer=cid)
                    except (AssertionError, OSError):
                        pass
                time.sleep(0.2)

        booking = threading.Thread(target=traffic, daemon=True)
        booking.start()
        try:
            follower = cli(project, "advance", "--env", "production", env=env, popen=True)
            state = project.state()
            try:
                wait_until(
                    lambda: sum(1 for v in state.verdicts("production") if v["percent"] == 10) >= 3,
                    timeout=60,
                    what="evaluations at 10 %",
                )
            finally:
                state.close()
            dead = {a.name: a for a in agents}[owner(project, "production") or ""]
            survivor = next(a for a in agents if a is not dead)
            dead.kill()  # kill -9 during the hold
            sandbox.faults(error_rate=1.0)  # and the provider starts failing: nobody holds the lease yet
            breach = time.monotonic()
            wait_until(
                lambda: service.http.get("/api/whatsapp/health").json()["flag_enabled"] is False,
                timeout=60,
                what="the survivor to turn the flag off",
            )
            took = time.monotonic() - breach
            print(f"provider failing (owner killed at the same moment) -> flag off by the survivor: {took:.2f}s")
            assert took < 45  # the lease (2s) + evaluations until the breach is clear; never unbounded
            off = next(e for e in audit(project, "production") if e["action"] == "flag_off")
            assert off["actor"] == survivor.name and off["detail"]["automatic"] is True
            said, _ = follower.communicate(timeout=30)
            assert follower.returncode == 1 and "rolled_back" in said, said
            assert state_of(project) == url
        finally:
            stop.set()
            booking.join(5)
            for agent in agents:
                agent.stop()
    finally:
        service.close()


def test_a_bad_agent_config_is_one_line_and_exit_2(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text("projects: []\nlisten: nowhere\n")
    done = subprocess.run(
        [sys.executable, "-m", "rollout", "agent", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "agent.yaml" in done.stderr, done.stderr


# --- the agent in this process, on a clock the test moves ----------------------------------------------


class InProcess:
    """An :class:`Agent` run in a thread on a manual clock: :meth:`step` moves time and waits until
    the agent has done every look due."""

    def __init__(self, project: Project, name: str = "agent-t") -> None:
        import io

        from rollout.agent.config import AgentConfig, ProjectEntry
        from rollout.agent.controller import Agent
        from rollout.agent.log import AgentLog
        from rollout.util.clock import ManualClock

        self.clock = ManualClock()
        self.log = io.StringIO()
        entry = ProjectEntry(playbook=project.playbook_path, environments=project.environments_dir)
        config = AgentConfig(name=name, state=str(project.state_path), lease_ttl=30, projects=[entry])
        self.agent = Agent(config, AgentLog(name, stream=self.log), self.clock)
        self.agent.open()
        self.thread = threading.Thread(target=self.agent.run, daemon=True)
        self.thread.start()

    def settled(self) -> bool:
        heap = self.agent._heap
        return not self.agent._running and (not heap or heap[0][0] > self.clock.time())

    def step(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.agent._wake.set()
        time.sleep(0.05)
        wait_until(self.settled, timeout=30, what="the agent's looks")

    def stop(self) -> None:
        self.agent.stop()
        self.thread.join(30)


def test_the_guard_goes_on_after_100_percent_a_breach_in_the_bake_turns_the_flag_off(
    flag_service, tmp_path, monkeypatch
):
    from rollout.engine import handoff

    monkeypatch.setenv("FLAG_TOKEN", TOKEN)
    service = flag_service.reset()
    project = flag_project(tmp_path, service)
    text = project.playbook_path.read_text()
    text = text.replace("phases:\n", "watch: {gate: g, interval: 1s}\nphases:\n").replace(
        "    environment: production\n", "    environment: production\n    bake: 1h\n"
    )
    project.playbook_path.write_text(text)
    agent = InProcess(project)
    try:
        state = project.state()
        try:
            handoff.request_run(state, "production", {}, "a person", agent.clock.time())
            wait_until(lambda: agent.agent.works, timeout=30, what="the agent to take the run")
            for _ in range(200):
                agent.step(0.1)
                if state.get("production").status == "completed":
                    break
            assert state.get("production").status == "completed" and service.state["percent"] == 100
            assert [w.mode for w in agent.agent.works.values()] == ["bake"]
            for _ in range(30):  # 30 s after 100 %, still watched
                agent.step(1.0)
            baked = [v for v in state.verdicts("production") if v["step"] == "bake"]
            assert len(baked) >= 30 and all(v["verdict"] == "pass" for v in baked)
            service.state["bad"] = 0.5  # the new path breaks half an hour later... or 30 s
            for _ in range(30):
                agent.step(1.0)
                if not service.state["enabled"]:
                    break
            assert service.state["enabled"] is False
            off = next(a for a in state.audit_log("production") if a["action"] == "flag_off")
            assert off["actor"] == "agent-t" and off["detail"]["reason"].startswith("bake: fail")
            assert state.get("production").status == "rolled_back"
        finally:
            state.close()
    finally:
        agent.stop()
