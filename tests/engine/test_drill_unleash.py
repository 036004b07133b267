"""The flag hint with a real Unleash server: its webhook integration (configured through the Admin
API, posting to the service on loopback) makes the service re-read the feature at once; the engine
sends the same hint after its own flag-off; the hint is never trusted for the value; and
``rollout drill`` times three replicas with the hint and polling alone, side by side."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from rollout.booking.flags.unleash import UnleashSource, applied_of
from rollout.booking.service.settings import LiveSettings
from rollout.engine import runner
from rollout.flags.unleash import UnleashFlags
from rollout.playbook.model import FlagSpec
from rollout.util.clock import SystemClock
from tests.cli.test_cli_engine import rollout
from tests.engine.test_drill import drill_project
from tests.flags.test_unleash import flag_block
from tests.support.engine_harness import GROUP, EngineWorld
from tests.support.harness import Service, base_env, wait_until

#: starts real servers: outside the fast loop; on the worker of tests/flags/test_unleash.py (one Unleash per session)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("unleash")]

HINT_TOKEN = "hint-token-0123456789"
#: a poll this slow cannot explain a flag-off seen within seconds: only a hint can
SLOW_POLL_S = 30.0


def served(unleash, feature: str, want: tuple[bool, int | None]) -> None:
    """Wait until the server's features answer (cached per revision, which moves once a second) shows
    ``feature`` as ``want``: a service that polls rarely must not start from an older answer."""
    client = {"Authorization": unleash.client_token()}

    def shown() -> tuple[bool, int | None]:
        answer = httpx.get(f"{unleash.url}/api/client/features", headers=client, timeout=5)
        return applied_of(answer.json()["features"], feature)

    wait_until(lambda: shown() == want, what=f"Unleash to serve {feature} as {want}")


def follower(
    unleash, folder: Path, sandbox, feature: str, refresh: float, replica: str
) -> tuple[Service, UnleashSource]:
    folder.mkdir()
    source = UnleashSource(unleash.url, unleash.client_token(), feature, refresh=refresh, replica_id=replica)
    service = Service(folder, base_env(sandbox.api_url, ROLLOUT_HINT_TOKEN=HINT_TOKEN), flag_source=source)
    return service, source


def backend(unleash, folder: Path, feature: str) -> UnleashFlags:
    spec = FlagSpec(backend="unleash", url=unleash.url, token="${T}", feature=feature)
    return UnleashFlags(spec, "production", folder, unleash.admin_token)


def test_unleash_s_webhook_makes_the_service_re_read_at_once_without_waiting_for_its_poll(unleash, sandbox, tmp_path):
    flags = backend(unleash, tmp_path, "wa-webhook")
    flags.set(enabled=True, percent=50)
    served(unleash, "wa-webhook", (True, 50))
    service, _source = follower(unleash, tmp_path / "svc", sandbox, "wa-webhook", SLOW_POLL_S, "r1")
    addon = None
    try:
        wait_until(lambda: service.metrics(1)["rollout_percent"] == 50, timeout=15, what="the first poll")
        answer = unleash.admin.post(
            "/api/admin/addons",
            json={
                "provider": "webhook",
                "enabled": True,
                "description": "rollout: re-read the flag now",
                "parameters": {
                    "url": f"{service.url}/api/whatsapp/flag/refresh",
                    "authorization": f"Bearer {HINT_TOKEN}",
                },
                "events": ["feature-environment-disabled", "feature-strategy-update"],
                "projects": ["*"],
                "environments": ["production"],
            },
        )
        assert answer.status_code == 201, answer.text
        addon = answer.json()["id"]
        # the server reads its integrations once a minute; a restart makes it read ours at once
        unleash.stop()
        unleash.start()
        polled_at = service.metrics(1)["flag_refreshed_at"]
        written = time.monotonic()
        flags.set(enabled=False)
        wait_until(lambda: service.metrics(1)["flag_enabled"] is False, timeout=10, what="the webhook's hint")
        took = time.monotonic() - written
        assert took < SLOW_POLL_S / 3  # far sooner than a poll: the hint did it
        assert service.metrics(1)["flag_refreshed_at"] == polled_at  # no poll happened meanwhile
        # Unleash recorded its call as a success (its integration events)
        events = unleash.admin.get(f"/api/admin/addons/{addon}/events").json()
        sent = [e for e in events["integrationEvents"] if e["event"]["type"] == "feature-environment-disabled"]
        assert sent and sent[0]["state"] == "success", events
        assert sent[0]["details"]["body"]["featureName"] == "wa-webhook"
    finally:
        if addon is not None:  # disabled, not deleted: the server's cached list may still call it, and
            # recording that call for a deleted integration fails a foreign key and ends the server
            unleash.admin.put(f"/api/admin/addons/{addon}", json={**answer.json(), "enabled": False})
        flags.close()
        service.close()


def test_a_hint_is_never_trusted_for_the_value_and_one_for_another_feature_is_ignored(unleash, sandbox, tmp_path):
    flags = backend(unleash, tmp_path, "wa-trust")
    flags.set(enabled=True, percent=30)
    served(unleash, "wa-trust", (True, 30))
    service, source = follower(unleash, tmp_path / "svc", sandbox, "wa-trust", SLOW_POLL_S, "r1")
    hint = {"Authorization": f"Bearer {HINT_TOKEN}"}
    event = {"type": "feature-environment-disabled", "featureName": "wa-trust", "environment": "production"}
    try:
        wait_until(lambda: service.metrics(1)["rollout_percent"] == 30, timeout=15, what="the first poll")
        other = service.http.post("/api/whatsapp/flag/refresh", headers=hint, json={**event, "featureName": "other"})
        assert (other.status_code, other.json()["refresh"]) == (202, "ignored")
        # the event says disabled; Unleash says on: the service re-reads and stays on
        answer = service.http.post("/api/whatsapp/flag/refresh", headers=hint, json=event)
        assert (answer.status_code, answer.json()["refresh"], answer.json()["flag_provider"]) == (
            202,
            "started",
            "unleash",
        )
        wait_until(lambda: source.rereads >= 1, what="the re-read")
        assert service.metrics(1)["flag_enabled"] is True
        # a burst of hints coalesces: at most one re-read in flight and one waiting
        before = source.rereads
        said = [service.http.post("/api/whatsapp/flag/refresh", headers=hint).json()["refresh"] for _ in range(20)]
        assert "queued" in said
        wait_until(lambda: source.rereads - before >= said.count("started"), what="the hints to be served")
        assert source.rereads - before < 20
    finally:
        flags.close()
        service.close()


def test_an_sdk_answer_that_lags_a_re_read_does_not_turn_the_flag_back_on(unleash, tmp_path):
    """The server's cached features answer moves once a second; an answer saying on that comes after
    a re-read found the feature off is checked against the uncached one before it is applied."""
    flags = backend(unleash, tmp_path, "wa-lag")
    flags.set(enabled=True, percent=40)
    served(unleash, "wa-lag", (True, 40))
    live = LiveSettings(environ={"WHATSAPP_NOTIFICATIONS_ENABLED": "false", "ZAPTRA_API_TOKEN": "sandbox-token-0123"})
    source = UnleashSource(unleash.url, unleash.client_token(), "wa-lag", refresh=SLOW_POLL_S)
    source.start(live)
    try:
        wait_until(lambda: live.current().notifications_enabled, timeout=15, what="the first poll")
        flags.set(enabled=False)
        source.refresh_now()
        wait_until(lambda: not live.current().notifications_enabled, what="the re-read")
        # the SDK's answer as the server may still serve it for up to a second: the feature on at 40 %
        lagging = httpx.Response(
            200,
            json={
                "features": [
                    {
                        "name": "wa-lag",
                        "enabled": True,
                        "strategies": [
                            {"name": "flexibleRollout", "title": "rollout", "parameters": {"rollout": "40"}}
                        ],
                    }
                ]
            },
            request=httpx.Request("GET", f"{source.url}/client/features"),
        )
        source._answered(lagging)
        assert not live.current().notifications_enabled  # the uncached answer says off: off it stays
        flags.set(enabled=True)  # now it is really on again: the same answer is applied
        source._answered(lagging)
        assert live.current().notifications_enabled and live.current().rollout_percent == 40
    finally:
        source.stop()
        flags.close()


def test_the_engine_s_flag_off_hints_the_service_so_it_obeys_before_its_next_poll(
    unleash, sandbox, tmp_path, monkeypatch
):
    monkeypatch.setenv("UNLEASH_ADMIN_TOKEN", unleash.admin_token)
    flags = backend(unleash, tmp_path, "wa-kill-hint")
    flags.set(enabled=True, percent=25)
    flags.close()
    served(unleash, "wa-kill-hint", (True, 25))
    source = UnleashSource(unleash.url, unleash.client_token(), "wa-kill-hint", refresh=SLOW_POLL_S)
    w = EngineWorld(tmp_path, sandbox, flag=flag_block(unleash, "wa-kill-hint"), flag_source=source)
    try:
        w.environ(monkeypatch)
        wait_until(lambda: w.service.metrics(1)["rollout_percent"] == 25, timeout=15, what="the first poll")
        polled_at = w.service.metrics(1)["flag_refreshed_at"]
        # the hint goes with the environment's admin token (it names no ROLLOUT_HINT_TOKEN)
        outcome = runner.rollback(w.project, "production", "pager", SystemClock(), who="oncall")
        assert (outcome.exit_code, outcome.details["confirmed"]) == (0, True), outcome.message
        metrics = w.service.metrics(1)
        assert metrics["flag_enabled"] is False and metrics["flag_refreshed_at"] == polled_at  # no poll: the hint
        assert source.rereads >= 1
    finally:
        w.close()


def test_a_drill_of_three_unleash_replicas_shows_the_hint_and_polling_alone_side_by_side(unleash, sandbox, tmp_path):
    flags = backend(unleash, tmp_path, GROUP)
    flags.set(enabled=False, percent=0)
    started = [follower(unleash, tmp_path / f"r{i}", sandbox, GROUP, 1.0, f"r{i}") for i in (1, 2, 3)]
    replicas = [service for service, _ in started]
    try:
        drill_project(
            tmp_path,
            flag_block(unleash, GROUP).strip(),
            f"service_url: {replicas[0].url}\nreplicas:\n"
            + "".join(f"  - {r.url}\n" for r in replicas)
            + "variables:\n  ROLLOUT_HINT_TOKEN: ${ROLLOUT_HINT_TOKEN}",
            percentages="5, 50",
        )
        done = rollout(
            tmp_path,
            "drill",
            "--env",
            "production",
            "--within",
            "5s",
            "--yes",
            "--json",
            UNLEASH_ADMIN_TOKEN=unleash.admin_token,
            ROLLOUT_HINT_TOKEN=HINT_TOKEN,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        hinted, polled = report["drill"]["rounds"]
        assert (hinted["hinted"], polled["hinted"]) == (True, False)
        for round_ in (hinted, polled):
            assert sorted(round_["replicas"]) == sorted(r.url for r in replicas)
            assert all(ms is not None for ms in round_["replicas"].values())
        assert (
            "slowest replica with the hint" in report["message"]
            and "slowest replica polling alone" in report["message"]
        )
        assert HINT_TOKEN not in done.stdout + done.stderr and unleash.admin_token not in done.stdout + done.stderr
        # back exactly as found: off at 0 % in Unleash, and off in every replica
        assert flags.state() == (False, 0)
        assert all(r.metrics(1)["flag_enabled"] is False for r in replicas)
    finally:
        flags.close()
        for service in replicas:
            service.close()
