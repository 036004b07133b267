"""Waves through the real engine, with three teams' services on loopback as regions (each its own
admin flag endpoint behind the http flag backend, its own stats), on a manual clock: the ordering,
the exposure budget holding writes back and lifting, the flag-off never delayed by a wave or the
budget, what status, history and the dashboard say, the CLI's refusal of a region whose wave may
not start yet, and a phase handed to a real agent process and followed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rollout.console import QuietReporter
from rollout.dashboard.app import snapshot
from rollout.dashboard.envpage import environment_page
from rollout.engine import fanout, runner
from rollout.engine.project import Project
from tests.engine.test_release_windows import Clock as WindowsClock
from tests.engine.test_release_windows import utc
from tests.gates.test_metric_roles import PLAYBOOK as ROLES
from tests.support.agents import AgentProcess
from tests.support.flagservice import TOKEN, FlagService, rollout_cli

REGIONS = ("eu-west", "us-east", "ap-south")
HOUR = 3600.0

PLAYBOOK = (
    ROLES[: ROLES.index("gates:")].replace("name: roles", "name: regions")
    + """\
gates:
  g:
    window: 10m
    min_samples: 1
    metrics:
      - {{metric: errors, provider: stats, kind: rate, query: {{url: /stats, value: bad, samples: n}}, target: 1%, alert: 5%}}
watch: {{gate: g, interval: {interval}}}
phases:
  - name: production
    waves:
      - environments: [eu-west]
      - environments: [us-east, ap-south]
        after: {after}
    weights: {{eu-west: 50, us-east: 30, ap-south: 20}}
    max_exposure: {max_exposure}
    on_failure: {on_failure}
    steps:
      - kind: configure
        set: {{FEATURE_ON: "false", FEATURE_SHARE: "0"}}
      - kind: ramp
        percentages: [10, 50, 100]
        hold: {hold}
        interval: {interval}
        gate: g
        max_hold: {hold}
"""
)


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, FlagService]]:
    """One team service per region for the module; each test resets them."""
    made = {region: FlagService() for region in REGIONS}
    yield made
    for service in made.values():
        service.server.stop()


@pytest.fixture
def regions(services, monkeypatch) -> dict[str, FlagService]:
    monkeypatch.setenv("FLAG_TOKEN", TOKEN)
    return {region: service.reset() for region, service in services.items()}


def project(
    tmp: Path,
    services: dict[str, FlagService],
    on_failure: str = "all_regions",
    max_exposure: str = "30%",
    after: str = "30m",
    hold: str = "1h",
    interval: str = "10m",
) -> Project:
    (tmp / "environments").mkdir(parents=True, exist_ok=True)
    for region, service in services.items():
        (tmp / "environments" / f"{region}.yaml").write_text(f"name: {region}\nservice_url: {service.url}\n")
    book = tmp / "regions.yaml"
    book.write_text(
        PLAYBOOK.format(on_failure=on_failure, max_exposure=max_exposure, after=after, hold=hold, interval=interval)
    )
    return Project(book, tmp / "environments", tmp / "state" / "state.db")


class Clock(WindowsClock):
    """The engine's clock from a Monday; ``at(hours, do)`` runs ``do`` at the first long sleep ``hours`` after it."""

    def __init__(self) -> None:
        super().__init__(utc(2027, 1, 4, 9))
        self.start = self.time()

    def at(self, hours: float, do: Callable[[], None]) -> None:
        super().at(self.start + hours * HOUR, do)


def drive(proj: Project, clock: Clock) -> runner.RunOutcome:
    return fanout.advance_phase(proj, fanout.waved_phase(proj, "production"), clock, QuietReporter())


def audit(proj: Project, region: str, *actions: str) -> list[dict]:
    state = proj.state(read_only=True)
    try:
        return [a for a in state.audit_log(region, 10_000) if not actions or a["action"] in actions]
    finally:
        state.close()


def at_hours(entries: list[dict], clock: Clock) -> list[tuple[float, str, int | None]]:
    return [(round((a["ts"] - clock.start) / HOUR, 2), a["action"], a["detail"].get("percent")) for a in entries]


def exposure_over_time(proj: Project, clock: Clock) -> list[tuple[float, str, float]]:
    """(hours, region, share of all customers exposed right after it) for every flag write of the
    regions, from their audits."""
    weights = {"eu-west": 0.5, "us-east": 0.3, "ap-south": 0.2}
    events = sorted(
        (a["ts"], a["id"], region, a["action"], a["detail"].get("percent"))
        for region in REGIONS
        for a in audit(proj, region, "ramp", "flag_off")
    )
    held: dict[str, int] = {}
    timeline = []
    for ts, _, region, action, percent in events:
        held[region] = percent if action == "ramp" else 0
        share = sum(held.get(r, 0) / 100 * w for r, w in weights.items())
        timeline.append((round((ts - clock.start) / HOUR, 2), region, share))
    return timeline


@pytest.mark.slow
def test_waves_start_in_order_and_the_budget_holds_the_second_wave_back_until_the_first_has_proven_itself(
    regions, tmp_path
):
    proj = project(tmp_path, regions)
    clock = Clock()
    outcome = drive(proj, clock)
    assert (outcome.status, outcome.exit_code) == ("completed", 0), outcome.message
    assert {r: (s.state["enabled"], s.state["percent"]) for r, s in regions.items()} == dict.fromkeys(
        REGIONS, (True, 100)
    )
    # ordering: the second wave began only once eu-west had held its first percentage for 30m
    assert at_hours(audit(proj, "eu-west", "phase_started", "ramp"), clock) == [
        (0.0, "phase_started", None),
        (0.0, "ramp", 10),
        (1.0, "ramp", 50),
        (2.0, "ramp", 100),
    ]
    for region in ("us-east", "ap-south"):
        waits = audit(proj, region, "wave_wait")
        assert waits and "eu-west has held 10% for" in waits[-1]["detail"]["why"]
        # the budget: at 50 % either would take the phase past 30 % while eu-west has not held 100 % for 30m
        assert at_hours(audit(proj, region, "phase_started", "ramp", "exposure_wait", "exposure_open"), clock) == [
            (0.5, "phase_started", None),
            (0.5, "ramp", 10),
            (1.5, "exposure_wait", 10),
            (2.5, "exposure_open", 10),
            (2.5, "ramp", 50),
            (3.5, "ramp", 100),
        ]
        [wait] = audit(proj, region, "exposure_wait")
        assert (
            "over max_exposure 30% (now 30%), while eu-west has not held the last percentage"
            in (wait["detail"]["why"][0])
        )
        assert wait["detail"]["opens"] == "once eu-west has held the last percentage for 30m"
    # no write of the second wave took the phase past its budget before eu-west had held 100 % for 30m
    # (2.5 h); the first wave's own writes are never held back (eu-west alone at 100 % is 50 %)
    timeline = exposure_over_time(proj, clock)
    early = [(hours, region, share) for hours, region, share in timeline if region != "eu-west" and hours < 2.5]
    assert early and all(share <= 0.30 + 1e-9 for _, _, share in early), timeline
    assert max(share for hours, _, share in timeline if hours < 2.5) == pytest.approx(0.55)
    # what people read: the dashboard's JSON, status and history say the waves
    rows = {row["name"]: row for row in snapshot(proj, now=clock.time())["environments"]}
    wave = rows["us-east"]["wave"]
    assert (wave["wave"], wave["waves"], wave["regions"], wave["policy"]) == (
        2,
        2,
        ["us-east", "ap-south"],
        "all_regions",
    )
    assert wave["exposure"] == pytest.approx(1.0) and wave["max_exposure"] == pytest.approx(0.3)
    assert wave["budget_in_force"] is False and wave["failed"] == [] and wave["waiting"] is None
    assert wave["regions_standing"]["eu-west"]["percent"] == 100
    page = environment_page(proj, proj.playbook(), "ap-south", now=clock.time())  # an environment's page
    assert page["wave"]["wave"] == 2 and page["wave"]["regions"] == ["us-east", "ap-south"]
    status = rollout_cli(proj, "status", "--json")
    data = {d["name"]: d for d in json.loads(status.stdout)}
    assert data["ap-south"]["wave"]["wave"] == 2 and data["eu-west"]["wave"]["wave"] == 1
    table = rollout_cli(proj, "status").stdout
    assert "us-east: wave 2/2 (us-east, ap-south); exposure 100% of max 30%" in table, table
    history = rollout_cli(proj, "history", "--env", "us-east").stdout
    assert "us-east is in production's wave 2/2 (us-east, ap-south)" in history
    assert "exposure_wait" in history and "exposure budget: 50% in us-east would expose 42%" in history
    # after 100 %, `rollout watch` in one region: its breach turns every region off (all_regions)
    regions["us-east"].state["bad"] = 0.5
    with runner.open_context(proj, "us-east", clock, QuietReporter()) as ctx:
        watched = runner.watch(ctx, max_evaluations=3)
    assert watched.exit_code == 1 and watched.status == "rolled_back"
    assert {r: s.state["enabled"] for r, s in regions.items()} == dict.fromkeys(REGIONS, False)
    [policy] = audit(proj, "us-east", "wave_failure")
    assert policy["detail"]["turned_off"] == ["us-east", "eu-west", "ap-south"]
    assert policy["detail"]["exposure"] == pytest.approx(1.0)
    for region in ("eu-west", "ap-south"):
        [off] = audit(proj, region, "flag_off")
        assert off["detail"]["reason"].startswith("on_failure all_regions: us-east failed: watch: fail")
        assert off["detail"]["previous_percent"] == 100


@pytest.mark.slow
def test_a_breach_in_a_region_the_budget_holds_back_turns_its_flag_off_at_the_next_evaluation(regions, tmp_path):
    proj = project(tmp_path, regions, on_failure="this_region")
    clock = Clock()
    breached: list[float] = []

    def breach() -> None:
        breached.append(clock.time())
        regions["ap-south"].state["bad"] = 0.5

    clock.at(1.6, breach)  # ap-south holds 10 %, its move to 50 % held back by the budget
    outcome = drive(proj, clock)
    assert outcome.exit_code == 1
    regions_said = outcome.details["regions"]
    assert regions_said["ap-south"]["status"] == "rolled_back"
    assert regions_said["eu-west"]["status"] == regions_said["us-east"]["status"] == "completed"
    [off] = audit(proj, "ap-south", "flag_off")
    waited = audit(proj, "ap-south", "exposure_wait")
    assert waited and waited[0]["ts"] < breached[0] and not audit(proj, "ap-south", "exposure_open")
    # the budget held its write back; it never held its guard: off at the first evaluation after the breach
    assert 0 < off["ts"] - breached[0] <= 600, off["ts"] - breached[0]
    assert off["detail"]["automatic"] and off["detail"]["previous_percent"] == 10
    assert off["detail"]["verdict"]["wave"]["policy"] == "this_region"
    assert regions["ap-south"].state["enabled"] is False
    [done] = audit(proj, "ap-south", "wave_failure")
    assert done["detail"]["turned_off"] == ["ap-south"] and done["detail"]["policy"] == "this_region"


@pytest.mark.slow
def test_a_person_turns_a_region_off_at_once_while_it_waits_for_its_wave_or_for_the_budget(regions, tmp_path, capsys):
    proj = project(tmp_path, regions, on_failure="this_region")
    clock = Clock()
    said: dict[str, runner.RunOutcome] = {}

    def stop(region: str) -> None:
        said[region] = runner.rollback(proj, region, "a person says stop", clock, who="oncall")

    clock.at(0.2, lambda: stop("us-east"))  # waits for its wave: never started
    clock.at(1.6, lambda: stop("ap-south"))  # holds 10 %, its next write held back by the budget
    outcome = drive(proj, clock)
    assert (said["us-east"].exit_code, said["ap-south"].exit_code) == (0, 0), said
    assert said["ap-south"].flag_off is not None and said["ap-south"].flag_off.previous_percent == 10
    [off] = audit(proj, "ap-south", "flag_off")
    assert off["ts"] == pytest.approx(clock.start + 1.6 * HOUR, abs=600)  # in the same look, not after a wait
    assert regions["ap-south"].state["enabled"] is False
    assert regions["us-east"].state["enabled"] is False and not audit(proj, "us-east", "ramp")
    # a person's rollback is not a breach: the phase's failure policy is not applied to it
    assert outcome.details["regions"]["eu-west"]["status"] == "completed"
    assert not any(audit(proj, r, "wave_failure") for r in REGIONS)
    # its incident report still says the region's wave
    code, report, _ = rollout_here(proj, capsys, "incident", "--env", "ap-south")
    assert code == 0 and "## Waves" in report
    assert "ap-south is in wave 2 of 2 of phase production (the regions of this wave: us-east, ap-south)" in report
    assert "SEV-3: production (ap-south), stopped by a person" in report


def rollout_here(proj: Project, capsys, *args: str) -> tuple[int, str, str]:
    """``rollout ARGS`` on ``proj``'s files, in this process (its one error boundary included)."""
    from rollout.cli.main import main

    where = ["--playbook", str(proj.playbook_path), "--environments", str(proj.environments_dir)]
    with pytest.raises(SystemExit) as ended:
        main([*args, *where, "--state", str(proj.state_path)])
    said = capsys.readouterr()
    return int(ended.value.code or 0), said.out, said.err


def test_advance_env_refuses_a_region_whose_wave_may_not_start_yet_in_one_line(regions, tmp_path, capsys):
    proj = project(tmp_path, regions)
    code, _, err = rollout_here(proj, capsys, "advance", "--env", "us-east")
    assert code == 3, err
    assert err.strip().splitlines() == [
        "rollout: us-east is in wave 2 of phase production: it starts once every region of wave 1 has held its "
        "percentage for 30m; eu-west has not started"
    ]
    assert regions["us-east"].state["enabled"] is False and regions["us-east"].state["percent"] == 0
    assert not audit(proj, "us-east")  # nothing was written, not even a lock note
    code, _, err = rollout_here(proj, capsys, "advance", "--env", "us-east", "--phase", "production")
    assert code == 2 and "give --env ENV (one environment or region) or --phase NAME" in err
    code, _, err = rollout_here(proj, capsys, "advance", "--phase", "nope")
    assert code == 2 and "no phase 'nope' (phases: production)" in err


@pytest.mark.slow
def test_a_phase_in_waves_is_handed_to_the_agent_region_by_region_and_followed(regions, tmp_path):
    proj = project(tmp_path, regions, after="1s", hold="1s", interval="0.2s", max_exposure="100%")
    agent = AgentProcess(tmp_path, "agent-a", proj, env={"FLAG_TOKEN": TOKEN})
    try:
        done = rollout_cli(proj, "advance", "--phase", "production", timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "is served by the agent agent-a: each region's run is handed to it" in done.stdout
        assert "[us-east] wave wait: " in done.stdout and "it starts once every region of wave 1" in done.stdout
        assert "completed: phase production in 3 regions" in done.stdout
        assert {r: (s.state["enabled"], s.state["percent"]) for r, s in regions.items()} == dict.fromkeys(
            REGIONS, (True, 100)
        )
        first = audit(proj, "eu-west", "ramp")[0]["ts"]
        for region in ("us-east", "ap-south"):
            started = audit(proj, region, "phase_started")[0]
            assert started["actor"] == "agent-a" and started["ts"] >= first + 1.0
    finally:
        assert agent.stop() == 0


@pytest.mark.slow
def test_advance_phase_drives_every_region_from_one_terminal(regions, tmp_path, capsys):
    proj = project(tmp_path, regions, after="0.3s", hold="0.4s", interval="0.1s", max_exposure="100%")
    code, out, _ = rollout_here(proj, capsys, "advance", "--phase", "production", "--dry-run")
    assert code == 0 and out.count("phase production in") == 3 and "dry run: nothing was written" in out
    assert not audit(proj, "eu-west")
    code, out, err = rollout_here(proj, capsys, "advance", "--phase", "production")
    assert code == 0, out + err
    assert "[us-east] waiting for its wave: us-east is in wave 2 of phase production" in out
    assert "completed: phase production in 3 regions: eu-west: completed" in out
    assert {r: (s.state["enabled"], s.state["percent"]) for r, s in regions.items()} == dict.fromkeys(
        REGIONS, (True, 100)
    )
    again, out, _ = rollout_here(proj, capsys, "advance", "--phase", "production", "--json")
    said = json.loads(out)
    assert again == 0 and {r["status"] for r in said["regions"].values()} == {"completed"}


@pytest.mark.slow
def test_all_regions_turns_off_a_region_outside_its_window_at_once(regions, tmp_path):
    proj = project(tmp_path, regions)
    # ap-south may move up only until 10:00 UTC on Mondays: from then on it waits for its window, guarded
    env = proj.environments_dir / "ap-south.yaml"
    env.write_text(env.read_text() + "windows: [Mon 09:00-10:00 UTC]\n")
    clock = Clock()  # Monday 09:00 UTC
    clock.at(1.6, lambda: regions["us-east"].state.update(bad=0.5))
    outcome = drive(proj, clock)
    assert outcome.exit_code == 1
    waiting = audit(proj, "ap-south", "window_wait")
    assert waiting and waiting[0]["detail"]["why"] == ["outside its windows (Mon 09:00-10:00 UTC)"]
    [failed] = audit(proj, "us-east", "flag_off")
    [off] = audit(proj, "ap-south", "flag_off")
    # its closed window held its next write back; it did not hold its flag-off: in the same look as us-east's
    assert off["id"] > failed["id"] and off["ts"] - failed["ts"] < 60
    assert off["detail"]["previous_percent"] == 10 and regions["ap-south"].state["enabled"] is False
