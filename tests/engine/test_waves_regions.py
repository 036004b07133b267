"""Three embedded booking services as regions (each with its own sandbox, so a breach is regional),
driven from one process by ``advance --phase``'s engine on a driving clock, with customer bookings
on every sleep: a breach in the second wave under ``all_regions`` (the fleet's PostgreSQL flag rows,
each region's service following its row, and the state on PostgreSQL) and under ``this_region``
(env files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollout.booking.flags.postgres import FlagFollower
from rollout.console import QuietReporter
from rollout.engine import fanout
from rollout.engine.project import Project
from rollout.flags import FlagStore
from tests.support.engine_harness import DrivingClock, customers_in
from tests.support.harness import ADMIN_TOKEN, SANDBOX_TOKEN, Sandbox, Service, base_env, booking_body, wait_until

pytestmark = pytest.mark.slow

REGIONS = ("eu-west", "us-east", "ap-south")

PLAYBOOK = """\
version: 1
name: regions
{flag}gates:
  g:
    window: 30s
    min_samples: 3
    metrics:
      - {{metric: success_rate, target: 95%, alert: 90%}}
      - {{metric: error_rate, target: 1%, alert: 5%}}
watch: {{gate: g, interval: 1s}}
phases:
  - name: production
    waves:
      - environments: [eu-west]
      - environments: [us-east, ap-south]
        after: 1s
    weights: {{eu-west: 50, us-east: 30, ap-south: 20}}
    max_exposure: 60%
    on_failure: {policy}
    steps:
      - kind: configure
        set: {{WHATSAPP_NOTIFICATIONS_ENABLED: "false", WHATSAPP_ROLLOUT_PERCENT: "0"}}
      - kind: ramp
        name: ramp
        percentages: [10, 50, 100]
        hold: 2s
        interval: 1s
        gate: g
        max_hold: 30s
        on_hold_timeout: fail
"""


class Regions:
    """Three regions, each a real service and its own sandbox, one driving clock for all."""

    def __init__(self, tmp: Path, policy: str, flag_db: str | None = None, state_url: str | None = None) -> None:
        self.clock = DrivingClock()
        self.sandboxes = {region: Sandbox() for region in REGIONS}
        self.services: dict[str, Service] = {}
        for region in REGIONS:
            folder = tmp / region
            folder.mkdir(parents=True)
            source = FlagFollower(flag_db, region, f"{region}-1", poll=0.5) if flag_db else None
            self.services[region] = Service(
                folder,
                base_env(
                    self.sandboxes[region].api_url, WHATSAPP_NOTIFICATIONS_ENABLED=False, WHATSAPP_ROLLOUT_PERCENT=0
                ),
                clock=self.clock,
                flag_source=source,
            )
        (tmp / "environments").mkdir()
        for region, service in self.services.items():
            (tmp / "environments" / f"{region}.yaml").write_text(
                f"name: {region}\nservice_url: {service.url}\nenv_file: {service.env_file}\n"
                "variables:\n"
                f"  ZAPTRA_API_URL: {self.sandboxes[region].api_url}\n"
                "  ZAPTRA_API_TOKEN: ${ZAPTRA_API_TOKEN}\n"
                "  ROLLOUT_ADMIN_TOKEN: ${ROLLOUT_ADMIN_TOKEN}\n"
            )
        flag = 'flag: {backend: postgres, database: "${FLAG_DB_URL}"}\n' if flag_db else ""
        (tmp / "regions.yaml").write_text(PLAYBOOK.format(flag=flag, policy=policy))
        self.project = Project(tmp / "regions.yaml", tmp / "environments", tmp / "state.db", state_url=state_url)
        self.http = {region: httpx.Client(base_url=s.url, timeout=10) for region, s in self.services.items()}
        self.booked = 0
        self.clock.on_sleep.append(self.traffic)

    def flag(self, region: str) -> tuple[bool, int]:
        """The flag as the region's service applies it."""
        m = self.services[region].metrics(1)
        return bool(m["flag_enabled"]), int(m["rollout_percent"])

    def traffic(self) -> None:
        """Customers book in every region whose flag is on, spread over the cohort bands as their share."""
        for region, service in self.services.items():
            if not self.flag(region)[0]:
                continue
            bands = ((0, 10, 1), (10, 25, 1), (25, 50, 2), (50, 100, 4))
            for cid in [c for low, high, n in bands for c in customers_in(low, high, n)]:
                self.booked += 1
                body = booking_body(self.booked, customer=cid)
                assert self.http[region].post("/api/bookings", json=body).status_code == 201
            wait_until(
                lambda s=service: (o := s.metrics(60)["outbox"])["due"] == 0 and o["sending"] == 0,
                timeout=15,
                what=f"{region}'s outbox to drain",
            )

    def breach_at(self, region: str, percent: int) -> None:
        """The provider of ``region`` fails every send once its ramp holds ``percent``."""

        def breach() -> None:
            if self.flag(region) == (True, percent):
                self.sandboxes[region].faults(error_rate=1.0, error_message="(#131000) Something went wrong")

        self.clock.on_sleep.insert(0, breach)

    def drive(self) -> Any:
        phase = fanout.waved_phase(self.project, "production")
        return fanout.advance_phase(self.project, phase, self.clock, QuietReporter())

    def audit(self, region: str, *actions: str) -> list[dict[str, Any]]:
        state = self.project.state()
        try:
            return [a for a in state.audit_log(region, 10_000) if not actions or a["action"] in actions]
        finally:
            state.close()

    def close(self) -> None:
        for client in self.http.values():
            client.close()
        for service in self.services.values():
            service.close()
        for box in self.sandboxes.values():
            box.close()


@pytest.fixture
def make_regions(tmp_path, monkeypatch) -> Iterator[Any]:
    monkeypatch.setenv("ZAPTRA_API_TOKEN", SANDBOX_TOKEN)
    monkeypatch.setenv("ROLLOUT_ADMIN_TOKEN", ADMIN_TOKEN)
    made: list[Regions] = []

    def make(**kw: Any) -> Regions:
        world = Regions(tmp_path, **kw)
        made.append(world)
        return world

    yield make
    for world in made:
        world.close()


def test_a_breach_in_the_second_wave_under_all_regions_turns_it_off_first_then_every_region(
    make_regions, postgres, monkeypatch
):
    flag_db = postgres.database()
    monkeypatch.setenv("FLAG_DB_URL", flag_db)
    world = make_regions(policy="all_regions", flag_db=flag_db, state_url=postgres.database())
    world.breach_at("us-east", 10)
    outcome = world.drive()
    assert outcome.exit_code == 1, outcome.message
    said = outcome.details["regions"]
    assert said["us-east"]["status"] == "rolled_back" and "ramp failed" in said["us-east"]["message"]
    assert {said[r]["status"] for r in ("eu-west", "ap-south")} == {"rolled_back"}
    # every region's service follows its own flag row: all of them off now
    for region in REGIONS:
        assert world.flag(region)[0] is False, region
    [failed] = world.audit("us-east", "flag_off")
    assert failed["detail"]["automatic"] and failed["detail"]["previous_percent"] == 10
    others = {r: world.audit(r, "flag_off") for r in ("eu-west", "ap-south")}
    for region, [off] in others.items():
        # the failing region's first, at once; then each other region, audited as caused by it
        assert off["id"] > failed["id"] and off["ts"] - failed["ts"] < 5, (region, off["ts"] - failed["ts"])
        assert off["detail"]["reason"].startswith("on_failure all_regions: us-east failed: ramp failed")
        assert off["detail"]["verdict"]["wave"]["caused_by"] == "us-east" and off["detail"]["automatic"]
        assert off["detail"]["previous_flag"] is True
        assert world.audit(region, "flag_off_confirmed"), region  # its service confirmed it off
    for region, [off] in others.items():  # each was on at the percentage its ramp last wrote
        assert off["detail"]["previous_percent"] == world.audit(region, "ramp")[-1]["detail"]["percent"]
    [policy] = world.audit("us-east", "wave_failure")
    assert policy["detail"]["turned_off"] == ["us-east", "eu-west", "ap-south"]
    assert policy["detail"]["policy"] == "all_regions" and policy["detail"]["problems"] == []
    # the incident reports say the waves: which wave, which region failed, what the policy did
    reports = {r: Path(world.audit(r, "incident_report")[-1]["detail"]["path"]).read_text() for r in REGIONS}
    assert (
        "us-east is in wave 2 of 2 of phase production (the regions of this wave: us-east, ap-south)"
        in (reports["us-east"])
    )
    assert "What the policy did (all_regions): turned off us-east, eu-west, ap-south." in reports["us-east"]
    assert "This region did not fail: us-east did" in reports["eu-west"]
    assert "SEV-2: production (eu-west) customers affected" in reports["eu-west"]
    # nothing starts again in the phase until a person resumes the failing region
    state = world.project.state()
    try:
        assert {state.get(r).status for r in REGIONS} == {"rolled_back"}
    finally:
        state.close()


def test_a_breach_in_the_second_wave_under_this_region_turns_only_its_flag_off_the_others_complete(make_regions):
    world = make_regions(policy="this_region")
    world.breach_at("us-east", 10)
    outcome = world.drive()
    assert outcome.exit_code == 1, outcome.message
    said = outcome.details["regions"]
    assert said["us-east"]["status"] == "rolled_back"
    assert said["eu-west"]["status"] == said["ap-south"]["status"] == "completed", said
    assert world.flag("us-east")[0] is False
    assert world.flag("eu-west") == world.flag("ap-south") == (True, 100)
    for region in ("eu-west", "ap-south"):
        assert FlagStore(world.services[region].env_file).state() == (True, 100)
        assert not world.audit(region, "flag_off")
        assert [a["detail"]["percent"] for a in world.audit(region, "ramp")] == [10, 50, 100]
    [policy] = world.audit("us-east", "wave_failure")
    assert policy["detail"]["turned_off"] == ["us-east"] and policy["detail"]["policy"] == "this_region"
    # us-east started only once eu-west had held its 10 % for the wave's 1 s
    first = world.audit("eu-west", "ramp")[0]["ts"]
    assert world.audit("us-east", "phase_started")[0]["ts"] >= first + 1
