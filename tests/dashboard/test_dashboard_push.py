"""The dashboard's pushed updates and its JSON, against real state stores and a real server: one change
detector per process reading only what is new, batches carrying only the changed fields, a client that
reconnects caught up from its last event id, and the actions' token checks with several projects."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollout.dashboard.app import create_dashboard
from rollout.dashboard.detector import ChangeDetector
from rollout.dashboard.driver import driver
from rollout.dashboard.metrics import exposition
from rollout.engine.project import Project
from rollout.engine.state import StateStore
from rollout.util.clock import ManualClock
from rollout.util.serving import ServerThread
from tests.support.launches import env_names, metrics, record, summary, write_playbooks

TOKEN = "dashboard-token-0123"


def verdict(project: Project, env: str, ts: float, kind: str = "hold", percent: int = 25) -> None:
    import random

    store = StateStore(project.state_path)
    try:
        found = metrics(random.Random(ts), kind, percent)
        store.record_verdict(env, ts, env, "ramp", percent, kind, summary(found, kind), found)
    finally:
        store.close()


class Events:
    """A client of ``/api/events``, reading in a thread: each event as (event, id, data)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[tuple[str, str | None, Any]] = []
        self.ended_cleanly: bool | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=30))
        self._response = self._client.send(self._client.build_request("GET", url, headers=headers), stream=True)
        self.status = self._response.status_code
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event, eid, data = "message", None, ""
        try:
            for line in self._response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("id: "):
                    eid = line[4:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and data:
                    self.events.append((event, eid, json.loads(data)))
                    event, eid, data = "message", None, ""
            self.ended_cleanly = True
        except httpx.HTTPError:
            self.ended_cleanly = False

    def wait(self, count: int, kind: str = "change", timeout: float = 10.0) -> list[tuple[str, str | None, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events if e[0] == kind]
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise AssertionError(f"{count} {kind} events not received: {self.events}")

    def close(self) -> None:
        """Hang up (the reading thread ends with the connection, or when the server stops)."""
        self._response.close()
        self._client.close()


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Project]:
    """Two projects whose playbooks both run ``eu-west-1``, with their records in their own stores."""
    projects = write_playbooks(tmp_path, 2, 3)
    record(projects["checkout"], env_names(3), time.time(), seed=4)
    return projects


def test_the_detector_reads_only_what_is_new_and_sends_only_what_changed(tmp_path):
    [(name, project)] = write_playbooks(tmp_path, 1, 3).items()
    StateStore(project.state_path).close()  # an empty store (a missing one is read again once it exists)
    clock = ManualClock()
    detector = ChangeDetector({name: project}, clock)
    first = detector.tick()
    assert first is not None and first.seq == 1
    keys = [f"{name}/{env}" for env in env_names(3)]
    assert sorted(first.rows) == sorted(keys)  # every row, whole, the first time
    assert [first.rows[k]["status"] for k in keys] == ["idle"] * 3
    assert [detector.snapshot()[1][i]["env"] for i in range(3)] == env_names(3)  # the playbook's order
    assert detector.tick() is None  # nothing changed: nothing sent
    quiet = detector.reads
    assert detector.tick() is None and detector.reads == quiet + 1  # one query a tick while nothing changes

    verdict(project, "eu-west-1", clock.time(), "hold", 25)
    batch = detector.tick()
    assert batch is not None and batch.seq == 2
    [(key, diff)] = batch.rows.items()
    assert key == keys[0] and list(diff) == ["last"]  # only the field that changed
    assert diff["last"]["verdict"] == "hold" and diff["last"]["metric"] == "success_rate"
    assert diff["last"]["short"] == "success_rate 93.00% < target 95.00%"
    [line] = batch.envs[key]["verdicts"]
    compared = next(m for m in line["metrics"] if m["metric"] == "booking_latency_ms")
    assert compared["compare"] is True and compared["treatment"] is not None and compared["control"] is not None

    store = StateStore(project.state_path)
    try:
        with store.tx() as db:
            store.update("eu-north-1", clock.time(), db=db, status="running", phase="eu-north-1", step_index=1)
            store.audit("eu-north-1", "step_started", clock.time(), db=db, step="ramp", kind="ramp")
    finally:
        store.close()
    batch = detector.tick()
    assert batch is not None
    assert {"status", "step", "step_since"} <= set(batch.rows[keys[1]])
    assert batch.rows[keys[1]]["step"] == "2/2 ramp"
    assert [s["state"] for s in batch.envs[keys[1]]["steps"]] == ["done", "current"]
    assert [a["action"] for a in batch.envs[keys[1]]["audit"]] == ["step_started"]

    # a client that saw batch 2 is sent 3 and nothing else; another process's id, or one too old: load again
    assert [b.seq for b in detector.replay(f"{detector.boot}-2") or []] == [3]
    assert detector.replay(f"{detector.boot}-3") == []
    assert detector.replay("someone-else-2") is None and detector.replay(f"{detector.boot}-9") is None
    detector._history = deque(list(detector._history)[-1:], maxlen=1)
    assert detector.replay(f"{detector.boot}-1") is None


def test_who_drives_an_environment_is_the_lock_holder_and_a_dead_one_is_nobody(tmp_path):
    [(name, project)] = write_playbooks(tmp_path, 1, 2).items()
    clock = ManualClock()
    store = StateStore(project.state_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        store.update("eu-west-1", clock.time(), status="running", phase="eu-west-1", step_index=1)
        store.update("eu-north-1", clock.time(), status="running", phase="eu-north-1", step_index=1)
        assert store.acquire("eu-west-1", clock.time()) is None
        store._db.execute(
            "INSERT INTO locks (environment, owner, pid, host, acquired_at) VALUES (?, ?, ?, ?, ?)",
            ("eu-north-1", "ana@elsewhere", gone.pid, __import__("socket").gethostname(), clock.time()),
        )
        me = driver(store, "eu-west-1")
        assert (
            me["kind"] == "terminal"
            and me["who"].startswith("terminal ")
            and me["who"].endswith(f"pid {__import__('os').getpid()}")
        )
        assert driver(store, "eu-north-1") == {
            "kind": None,
            "who": "nobody",
            "gone": f"terminal ana@elsewhere pid {gone.pid}",
        }
        rows = {r["env"]: r for r in ChangeDetector({name: project}, clock).tick().rows.values()}
        assert rows["eu-west-1"]["driver"] == me and rows["eu-west-1"]["status"] == "running"
        assert rows["eu-north-1"]["driver"]["who"] == "nobody" and rows["eu-north-1"]["status"] == "interrupted"
    finally:
        store.close()


def test_a_reconnecting_client_is_sent_what_it_missed_and_a_lost_one_is_told_to_reload(world):
    server = ServerThread(create_dashboard(world, None, tick_s=0.02)).start()
    try:
        first = httpx.get(f"{server.url}/api/overview").json()
        assert first["projects"] == ["checkout", "search"] and len(first["rows"]) == 6
        live = Events(f"{server.url}/api/events?since={first['id']}")
        assert live.status == 200
        verdict(world["search"], "eu-north-1", time.time(), "fail", 10)
        [(_, seen, data)] = live.wait(1)
        assert (
            list(data["rows"]) == ["search/eu-north-1"]
            and data["rows"]["search/eu-north-1"]["last"]["verdict"] == "fail"
        )
        live.close()
        verdict(world["search"], "eu-west-1", time.time(), "pass", 10)  # while disconnected
        verdict(world["checkout"], "us-east-1", time.time(), "hold", 50)
        httpx.get(f"{server.url}/api/overview")  # the detector has moved on by then
        back = Events(f"{server.url}/api/events", {"Last-Event-ID": seen or ""})
        missed = back.wait(1)
        got = [k for _, _, d in missed for k in d["rows"]]
        deadline = time.monotonic() + 10
        while sorted(got) != ["checkout/us-east-1", "search/eu-west-1"] and time.monotonic() < deadline:
            got = [k for _, _, d in back.events if d.get("rows") for k in d["rows"]]
            time.sleep(0.01)
        assert sorted(got) == ["checkout/us-east-1", "search/eu-west-1"]
        back.close()
        lost = Events(f"{server.url}/api/events", {"Last-Event-ID": "0000-1"})
        [(_, _, why)] = lost.wait(1, "reset")
        assert "load again" in why["why"]
        lost.close()
    finally:
        server.stop()


def test_five_open_pages_cost_the_state_store_nothing_more(world, monkeypatch):
    opened = []
    real = Project.state
    monkeypatch.setattr(Project, "state", lambda self, read_only=False: opened.append(self) or real(self, read_only))
    server = ServerThread(create_dashboard(world, None, tick_s=0.02)).start()
    try:
        start = httpx.get(f"{server.url}/api/overview").json()["id"]
        before = len(opened)
        clients = [Events(f"{server.url}/api/events?since={start}") for _ in range(5)]
        verdict(world["checkout"], "eu-west-1", time.time(), "fail", 25)
        seen = [c.wait(1)[-1][2]["rows"] for c in clients]
        assert all(list(rows) == ["checkout/eu-west-1"] for rows in seen)
        assert len(opened) == before  # the streams fan out what the one detector read
        detector = server.server.config.app.state.detector
        ticks, reads = detector.ticks, detector.reads
        time.sleep(0.3)
        # idle: one fingerprint a store a tick (and the drivers asked again now and then), whatever the clients
        assert detector.reads - reads <= (detector.ticks - ticks + 2) * 2 + 6
        for c in clients:
            c.close()
    finally:
        server.stop()


def test_the_overview_and_an_environment_page_as_json(world):
    server = ServerThread(create_dashboard(world, TOKEN, tick_s=0.02)).start()
    try:
        overview = httpx.get(f"{server.url}/api/overview").json()
        assert overview["writable"] is True and overview["problems"] == []
        assert [r["key"] for r in overview["rows"][:3]] == [f"checkout/{e}" for e in env_names(3)]
        page = httpx.get(f"{server.url}/api/env/checkout/eu-west-1").json()
        assert page["row"]["key"] == "checkout/eu-west-1" and page["steps"][1]["kind"] == "ramp"
        assert page["verdicts"] and all(v["metrics"] for v in page["verdicts"])
        assert [a["action"] for a in page["audit"]][:2] == ["phase_started", "step_started"]
        assert page["flag"]["source"] == "as rollout recorded it"  # no environment file: the record says
        assert httpx.get(f"{server.url}/api/env/checkout/nowhere").status_code == 404
        assert httpx.get(f"{server.url}/api/events?env=checkout/nowhere").status_code == 404
        html = httpx.get(f"{server.url}/env/checkout/eu-west-1")
        assert html.status_code == 200 and "/static/envpage.js" in html.text
        assert httpx.get(f"{server.url}/static/../app.py").status_code == 404
        assert "rollout_environment_status" in httpx.get(f"{server.url}/metrics").text
        state = httpx.get(f"{server.url}/api/state").json()
        assert {e["project"] for e in state["environments"]} == {"checkout"}
    finally:
        server.stop()


def test_the_actions_keep_their_token_checks_and_are_told_which_project(world):
    readonly = ServerThread(create_dashboard(world, None)).start()
    try:
        body = {"environment": "eu-west-1", "project": "checkout", "reason": "x"}
        assert httpx.post(f"{readonly.url}/api/pause", json=body).status_code == 403
    finally:
        readonly.stop()
    server = ServerThread(create_dashboard(world, TOKEN)).start()
    try:
        url, good = server.url, {"Authorization": f"Bearer {TOKEN}", "X-Actor": "ana"}
        body = {"environment": "eu-west-1", "reason": "a closer look"}
        assert httpx.post(f"{url}/api/pause", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        form = httpx.post(f"{url}/api/pause", data=body, headers=good)
        assert form.status_code == 422  # JSON bodies only
        ambiguous = httpx.post(f"{url}/api/pause", json=body, headers=good)
        assert ambiguous.status_code == 400 and "checkout, search run one" in ambiguous.json()["error"]
        assert httpx.post(f"{url}/api/pause", json={**body, "project": "elsewhere"}, headers=good).status_code == 404
        nothing = httpx.post(f"{url}/api/pause", json={**body, "project": "search"}, headers=good)
        assert nothing.status_code == 409 and "nothing is running in eu-west-1" in nothing.json()["error"]
        lock = StateStore(world["search"].state_path)  # as a terminal's advance holds it (this process, alive)
        try:
            lock.acquire("eu-west-1", time.time())
        finally:
            lock.close()
        done = httpx.post(f"{url}/api/pause", json={**body, "project": "search"}, headers=good)
        assert done.status_code == 200, done.text
        for name, project in world.items():
            store = StateStore(project.state_path)
            try:
                paused = [
                    (a["actor"], a["detail"]["reason"]) for a in store.audit_log("eu-west-1") if a["action"] == "paused"
                ]
            finally:
                store.close()
            assert paused == ([("ana via dashboard", "a closer look")] if name == "search" else [])
        asked = httpx.options(
            f"{url}/api/pause", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in asked.headers  # no CORS
        assert (
            "access-control-allow-origin"
            not in httpx.get(f"{url}/api/overview", headers={"Origin": "http://evil.example"}).headers
        )
    finally:
        server.stop()


def test_metrics_name_the_project_only_when_there_are_several(world):
    record(world["search"], env_names(3), time.time(), seed=5)
    several = exposition(world).decode()
    # the same environment in two projects: two series, told apart by the project
    assert 'rollout_environment_step{environment="eu-west-1",phase="eu-west-1",project="checkout"}' in several
    assert 'rollout_environment_step{environment="eu-west-1",phase="eu-west-1",project="search"}' in several
    assert all('project="' in line for line in several.splitlines() if line.startswith("rollout_"))
    one = exposition(world["checkout"]).decode()
    assert "project=" not in one and 'rollout_environment_status{environment="eu-west-1"' in one


def test_stopping_the_server_ends_its_open_streams(world):
    server = ServerThread(create_dashboard(world, None, tick_s=0.02)).start()
    client = Events(f"{server.url}/api/events")
    try:
        client.wait(0)
        deadline = time.monotonic() + 5
        while not any(e for e in client.events) and time.monotonic() < deadline:
            verdict(world["checkout"], "eu-west-1", time.time())
            time.sleep(0.05)
    finally:
        server.stop()
    client._thread.join(10)
    # ended by the server (a whole chunked response), not cut off after the graceful shutdown's timeout
    assert client.ended_cleanly is True
    client.close()


def test_no_event_holds_a_number_json_cannot_carry(world):
    store = StateStore(world["checkout"].state_path)
    try:
        m = metrics(__import__("random").Random(1), "hold", 25)
        m[0]["value"] = float("nan")
        store.record_verdict("eu-west-1", time.time(), "eu-west-1", "ramp", 25, "hold", "hold: x", m)
    finally:
        store.close()
    detector = ChangeDetector(world, ManualClock())
    detector.tick()
    from rollout.dashboard.events import encode

    verdict(world["checkout"], "eu-west-1", time.time())
    store = StateStore(world["checkout"].state_path)
    try:
        store.record_verdict("eu-west-1", time.time(), "eu-west-1", "ramp", 25, "hold", "hold: x", m)
    finally:
        store.close()
    batch = detector.tick()
    encoded = encode(detector.boot, batch, "checkout/eu-west-1").decode()
    data = encoded.split("data: ", 1)[1]
    assert "NaN" not in data and json.loads(data)["verdicts"][-1]["metrics"][0]["value"] is None


def test_the_pages_need_nothing_from_the_internet():
    static = Path(__file__).resolve().parents[2] / "rollout" / "dashboard" / "static"
    for asset in static.iterdir():
        text = asset.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), asset.name
        assert "import " not in text or asset.suffix != ".js", asset.name  # plain scripts, no bundler


@pytest.mark.slow
def test_the_detector_follows_a_postgresql_store_shared_by_two_projects(tmp_path, postgres):
    from rollout.engine.pgstate import PgStateStore

    url = postgres.database()
    projects = {
        name: Project(p.playbook_path, p.environments_dir, p.state_path, state_url=url)
        for name, p in write_playbooks(tmp_path, 2, 2).items()
    }
    store = PgStateStore(url)
    try:
        clock = ManualClock()
        detector = ChangeDetector(projects, clock)
        first = detector.tick()
        assert first is not None and len(first.rows) == 4 and len(detector.stores) == 1  # one store, read once
        with store.tx() as db:
            store.update("eu-west-1", clock.time(), db=db, status="running", phase="eu-west-1", step_index=1)
            store.audit("eu-west-1", "step_started", clock.time(), db=db, step="ramp", kind="ramp")
        store.set_control("eu-west-1", clock.time(), paused=True)
        found = metrics(__import__("random").Random(2), "fail", 25)
        store.record_verdict("eu-west-1", clock.time(), "eu-west-1", "ramp", 25, "fail", summary(found, "fail"), found)
        batch = detector.tick()
        assert batch is not None
        for key in ("checkout/eu-west-1", "search/eu-west-1"):  # both projects run it: both rows move
            assert batch.rows[key]["status"] == "interrupted"  # running, and nobody holds its lock
            assert batch.rows[key]["paused"] is True and batch.rows[key]["last"]["verdict"] == "fail"
            assert [v["verdict"] for v in batch.envs[key]["verdicts"]] == ["fail"]
        assert detector.tick() is None
    finally:
        store.close()


def test_a_project_name_that_cannot_be_a_url_segment_is_refused_in_one_line(world):
    from rollout.util.errors import ConfigError

    with pytest.raises(ConfigError, match=r"project name 'a/b': letters, digits"):
        create_dashboard({"a/b": world["checkout"]}, None)
