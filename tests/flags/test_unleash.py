"""Flags where teams keep them: a real Unleash server (npm's ``unleash-server`` on the session's
PostgreSQL), driven by the ``unleash`` flag backend, and the real service following the feature
through OpenFeature. Nothing here mocks Unleash."""

from __future__ import annotations

import itertools
import time

import pytest

from rollout.booking.flags.unleash import UnleashSource, applied_of
from rollout.flags import FlagWriteError
from rollout.playbook.model import FlagSpec
from tests.support.engine_harness import GROUP, EngineWorld
from tests.support.flagservice import rollout_cli
from tests.support.harness import wait_until

#: starts real servers (or kills real processes): outside the fast loop; on one worker with
#: tests/engine/test_drill_unleash.py, so the session starts one Unleash (a node server, its migrations) and not one per worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("unleash")]

CUSTOMERS = [f"cust-{i}" for i in range(1000)]


def flag_block(unleash, feature: str = GROUP, environment: str = "production") -> str:
    return (
        f"flag: {{backend: unleash, url: '{unleash.url}', token: '${{UNLEASH_ADMIN_TOKEN}}', "
        # one flag operation (a configure creating the feature: five requests) has flag.timeout in all;
        # a node server on a loaded 2-core test machine can take more than the default 5 s for them
        f"feature: {feature}, environment: {environment}, timeout: 20s}}\n"
    )


@pytest.fixture
def uworld(tmp_path, sandbox, unleash, monkeypatch):
    """An engine world whose flag lives in Unleash and whose service follows it (refresh 0.25 s)."""
    made = []

    def make(feature: str = GROUP, environment: str = "production", lease: float = 2.0, **kw) -> EngineWorld:
        monkeypatch.setenv("UNLEASH_ADMIN_TOKEN", unleash.admin_token)
        source = UnleashSource(unleash.url, unleash.client_token(environment), feature, refresh=0.25, lease=lease)
        w = EngineWorld(tmp_path, sandbox, flag=flag_block(unleash, feature, environment), flag_source=source, **kw)
        w.environ(monkeypatch)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def test_a_ramp_through_unleash_is_followed_by_the_service_customer_by_customer(uworld, unleash):
    w = uworld()
    rt = w.service.app.state.rt
    seen: dict[int, frozenset[str]] = {}

    def look() -> None:  # what the service decides, through OpenFeature and the Unleash SDK
        settings = rt.live.current()
        if settings.notifications_enabled and settings.rollout_percent not in seen:
            seen[settings.rollout_percent] = frozenset(c for c in CUSTOMERS if rt.flags.in_treatment(settings, c))

    w.clock.on_sleep += [look, w.traffic(40)]
    outcome = w.advance()
    assert (outcome.status, outcome.exit_code) == ("completed", 0), outcome.as_dict()
    assert [r["detail"]["percent"] for r in w.audit("ramp")] == [10, 25, 50, 100]
    # Unleash holds what the engine wrote: on, one flexibleRollout at 100, sticky on the customer id
    env = unleash.environment_of(GROUP)
    [strategy] = env["strategies"]
    assert env["enabled"] is True and strategy["title"] == "rollout"
    assert strategy["parameters"] == {"rollout": "100", "stickiness": "userId", "groupId": GROUP}
    assert sorted(seen) == [10, 25, 50, 100]
    for percent, inside in seen.items():  # Unleash decides who is in: the share tracks each step
        assert abs(len(inside) / 10 - percent) <= 3, (percent, len(inside))
    steps = sorted(seen)
    for low, high in itertools.pairwise(steps):  # nobody leaves the treatment as it grows
        assert seen[low] <= seen[high]
    metrics = w.service.metrics(1)
    assert (metrics["flag_provider"], metrics["flag_enabled"], metrics["rollout_percent"]) == ("unleash", True, 100)
    assert time.time() - metrics["flag_refreshed_at"] < 5


def test_a_breach_turns_the_feature_off_in_unleash_and_the_service_stops_sending(uworld, unleash, sandbox):
    w = uworld(environment="development")
    w.breach_at(25)
    outcome = w.advance()
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1), outcome.as_dict()
    assert unleash.environment_of(GROUP, "development")["enabled"] is False
    [off] = w.audit("flag_off")
    assert off["detail"]["previous_percent"] == 25 and off["detail"]["automatic"] is True
    assert w.audit("flag_off_confirmed")  # the service was seen to take the flag-off in
    sandbox.faults(error_rate=0.0)
    w.book(["cust-1", "cust-2", "cust-3"])
    rows = w.http.get("/api/whatsapp/metrics", params={"window": 60}).json()
    assert w.service.metrics(1)["flag_enabled"] is False and rows["outbox"]["due"] == 0
    last = w.http.get(f"/api/bookings/{w.booked}", headers=w.service.admin).json()
    assert last["notification"]["status"] == "skipped" and last["notification"]["reason"] == "flag_off"


def test_unleash_down_during_a_rollback_is_not_confirmed_and_the_service_stops_on_its_lease(uworld, unleash):
    feature = "wa-lease"
    w = uworld(feature=feature, lease=1.5)
    w.flags.set(enabled=True, percent=50)
    wait_until(lambda: w.service.metrics(1)["rollout_percent"] == 50, timeout=10, what="the service to follow")
    unleash.stop()
    try:
        stopped_at = time.monotonic()
        done = rollout_cli(w.project, "rollback", "--env", "production", "--reason", "drill", env={"NO_COLOR": "1"})
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and "cannot be reached" in done.stdout + done.stderr
        [failed] = w.audit("flag_off_failed")
        assert f"feature {feature}" in failed["detail"]["backend"]
        # the report is written all the same, from the record, and the report on demand needs no Unleash
        assert w.audit("incident_report")
        report = rollout_cli(w.project, "incident", "--env", "production", env={"NO_COLOR": "1"})
        assert report.returncode == 0 and "the flag backend could not be read" in report.stdout, report.stderr
        # the service cannot reach Unleash: it stops on its own once the lease has run out
        health = wait_until(
            lambda: (h := w.http.get("/api/whatsapp/health").json())["status"] == "down" and h, timeout=10
        )
        assert (
            time.monotonic() - stopped_at >= 1.5 - 0.3
        )  # not before the lease (the last refresh was <= 0.25 s before)
        assert "flag source (unleash) unreachable past the lease; sends stopped" in health["problems"]
        w.book(["cust-7"])
        last = w.http.get(f"/api/bookings/{w.booked}", headers=w.service.admin).json()
        assert last["notification"]["reason"] == "flag_off"
    finally:
        unleash.start()
    # Unleash back: the service follows it again (still on at 50 %: the flag-off never reached it)
    wait_until(lambda: w.http.get("/api/whatsapp/health").json()["status"] != "down", timeout=15)
    assert w.service.metrics(1)["rollout_percent"] == 50


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"token": "${WRONG_TOKEN}"}, "HTTP 401, the token (flag.token) is not valid"),
        ({"project": "nope"}, "project 'nope' or environment"),
        ({"environment": "staging"}, "project 'default' has no environment 'staging' (it has development, production)"),
    ],
)
def test_a_wrong_token_project_or_environment_is_one_line_naming_it(tmp_path, unleash, change, expected):
    spec = FlagSpec.model_validate(
        {"backend": "unleash", "url": unleash.url, "token": "${T}", "feature": "wa-errors", **change}
    )
    from rollout.flags.unleash import UnleashFlags

    token = "*:*.wrong" if "token" in change else unleash.admin_token
    flags = UnleashFlags(spec, "production", tmp_path, token)
    try:
        with pytest.raises(FlagWriteError) as caught:
            flags.set(enabled=True, percent=10)
    finally:
        flags.close()
    message = str(caught.value)
    assert expected in message and "\n" not in message and token not in message


def test_a_client_token_cannot_write_and_the_cli_says_so_in_one_line(uworld, unleash):
    w = uworld(feature="wa-client-token")
    done = rollout_cli(
        w.project,
        "rollback",
        "--env",
        "production",
        "--reason",
        "drill",
        env={"UNLEASH_ADMIN_TOKEN": unleash.client_token(), "NO_COLOR": "1"},
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in out
    assert "HTTP 403, the token (flag.token) may not do it (an admin token is needed)" in out
    assert unleash.client_token() not in out  # the token is redacted in every output


def test_a_service_with_a_wrong_client_token_never_sends_and_says_why(make_service, unleash, tmp_path):
    source = UnleashSource(unleash.url, "*:production.not-a-token", "wa-never", refresh=0.25, lease=1.0)
    from tests.support.harness import Service, base_env

    folder = tmp_path / "svc"
    folder.mkdir()
    svc = Service(folder, base_env("http://127.0.0.1:9"), flag_source=source)
    try:
        health = svc.http.get("/api/whatsapp/health").json()
        assert health["status"] == "down" and health["flag_provider"] == "unleash"
        assert health["flag_refreshed_at"] is None and health["flag_enabled"] is False
    finally:
        svc.close()


def test_what_the_service_applies_from_a_features_answer():
    on = {"name": "f", "enabled": True}
    assert applied_of([], "f") == (False, None)
    assert applied_of([{**on, "strategies": []}], "f") == (True, 100)
    assert applied_of([{**on, "strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "25"}}]}], "f") == (
        True,
        25,
    )
    assert applied_of([{**on, "strategies": [{"name": "default"}]}], "f") == (True, 100)
    assert applied_of([{**on, "strategies": [{"name": "userWithId"}]}], "f") == (True, None)


def test_the_service_refuses_a_bad_unleash_setting_in_one_line():
    from rollout.util.errors import ConfigError

    with pytest.raises(ConfigError, match="UNLEASH_API_TOKEN: not set"):
        UnleashSource("http://127.0.0.1:4242", "", "f")
    with pytest.raises(ConfigError, match="--flag-lease: must be longer than the refresh"):
        UnleashSource("http://127.0.0.1:4242", "t", "f", refresh=2, lease=1)


def test_replicas_on_one_host_each_follow_every_flip(unleash, sandbox, tmp_path):
    """The SDK's default cache is one file per app name on the host: replicas shared its ETag, got
    304 and one stayed on after a flag-off. Each service keeps its own; every flip reaches both."""
    from rollout.flags.unleash import UnleashFlags
    from tests.support.harness import Service, base_env

    spec = FlagSpec(backend="unleash", url=unleash.url, token="${T}", feature="wa-replicas", timeout=20)
    flags = UnleashFlags(spec, "production", tmp_path, unleash.admin_token)
    flags.set(enabled=False, percent=100)
    replicas = []
    for i in (1, 2):
        (tmp_path / f"r{i}").mkdir()
        source = UnleashSource(unleash.url, unleash.client_token(), "wa-replicas", refresh=0.25, replica_id=f"r{i}")
        replicas.append(Service(tmp_path / f"r{i}", base_env(sandbox.api_url), flag_source=source))
    try:
        for flip in range(6):
            want = flip % 2 == 0
            flags.set(enabled=want)
            for r in replicas:
                wait_until(lambda r=r, w=want: r.metrics(1)["flag_enabled"] is w, timeout=5, what=f"flip {flip}")
    finally:
        flags.close()
        for r in replicas:
            r.close()
