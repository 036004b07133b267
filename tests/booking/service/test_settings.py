import pytest

from rollout.booking.service.settings import LiveSettings, settings_from
from rollout.util.envfile import read_env_file, write_env_file
from rollout.util.errors import ConfigError

TOKEN = "zaptra-secret-token"


def test_defaults_follow_the_seed_plan():
    s = settings_from({})
    assert (s.notifications_enabled, s.fallback_enabled, s.retry_attempts, s.timeout_ms, s.debug) == (
        False,
        True,
        3,
        10_000,
        False,
    )
    assert (s.breaker_threshold, s.breaker_reset_ms, s.rollout_percent) == (5, 60_000, 100)


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"WHATSAPP_RETRY_ATTEMPTS": "lots"}, "WHATSAPP_RETRY_ATTEMPTS"),
        ({"WHATSAPP_ROLLOUT_PERCENT": "150"}, "WHATSAPP_ROLLOUT_PERCENT"),
        ({"WHATSAPP_NOTIFICATIONS_ENABLED": "maybe"}, "WHATSAPP_NOTIFICATIONS_ENABLED"),
        ({"ZAPTRA_API_URL": "ftp://x"}, "ZAPTRA_API_URL"),
        ({"WHATSAPP_TIMEOUT_MS": "0"}, "WHATSAPP_TIMEOUT_MS"),
        ({"WHATSAPP_NOTIFICATIONS_ENABLED": "true"}, "ZAPTRA_API_TOKEN"),
    ],
)
def test_invalid_values_name_the_variable(values, variable):
    with pytest.raises(ConfigError) as info:
        settings_from(values, "prod.env")
    assert str(info.value).startswith("prod.env: ") and variable in str(info.value)


def test_a_bad_token_value_is_never_echoed():
    with pytest.raises(ConfigError) as info:
        settings_from({"ZAPTRA_API_TOKEN": "short"})
    assert "short" not in str(info.value) and "ZAPTRA_API_TOKEN" in str(info.value)


def test_env_file_wins_over_process_environment(tmp_path):
    env_file = tmp_path / "svc.env"
    write_env_file(env_file, {"WHATSAPP_NOTIFICATIONS_ENABLED": "false"})
    live = LiveSettings(
        env_file,
        environ={"WHATSAPP_NOTIFICATIONS_ENABLED": "true", "ZAPTRA_API_TOKEN": TOKEN, "WHATSAPP_RETRY_ATTEMPTS": "5"},
    )
    assert live.current().notifications_enabled is False
    assert live.current().retry_attempts == 5


def test_live_reload_picks_up_a_change_and_fails_closed_on_a_bad_one(tmp_path):
    env_file = tmp_path / "svc.env"
    write_env_file(
        env_file,
        {"WHATSAPP_NOTIFICATIONS_ENABLED": "true", "ZAPTRA_API_TOKEN": TOKEN, "WHATSAPP_ROLLOUT_PERCENT": "10"},
    )
    changes = []
    live = LiveSettings(env_file, environ={}, check_interval=0, on_change=lambda a, b: changes.append(b))
    assert live.current().rollout_percent == 10
    write_env_file(
        env_file,
        {"WHATSAPP_NOTIFICATIONS_ENABLED": "true", "ZAPTRA_API_TOKEN": TOKEN, "WHATSAPP_ROLLOUT_PERCENT": "25"},
    )
    assert live.current().rollout_percent == 25 and live.error is None
    write_env_file(
        env_file,
        {"WHATSAPP_NOTIFICATIONS_ENABLED": "true", "ZAPTRA_API_TOKEN": TOKEN, "WHATSAPP_ROLLOUT_PERCENT": "2000"},
    )
    current = live.current()
    assert current.notifications_enabled is False and current.rollout_percent == 25
    assert "WHATSAPP_ROLLOUT_PERCENT" in live.error
    env_file.unlink()
    assert live.current().notifications_enabled is False and "not found" in live.error
    write_env_file(
        env_file,
        {"WHATSAPP_NOTIFICATIONS_ENABLED": "true", "ZAPTRA_API_TOKEN": TOKEN, "WHATSAPP_ROLLOUT_PERCENT": "50"},
    )
    assert live.current().notifications_enabled is True and live.current().rollout_percent == 50
    assert live.error is None
    assert [c.rollout_percent for c in changes] == [25, 25, 50]


def test_start_up_refuses_bad_configuration(tmp_path):
    env_file = tmp_path / "svc.env"
    write_env_file(env_file, {"WHATSAPP_BREAKER_THRESHOLD": "0"})
    with pytest.raises(ConfigError, match="WHATSAPP_BREAKER_THRESHOLD"):
        LiveSettings(env_file, environ={})
    with pytest.raises(ConfigError, match="not found"):
        LiveSettings(tmp_path / "missing.env", environ={})


def test_env_file_round_trip_with_awkward_values(tmp_path):
    path = tmp_path / "a.env"
    values = {"A": "plain", "B": "with space", "C": "it's #1", "D": "", "E": "x=y", "F": "back\\slash"}
    write_env_file(path, values, header="written by a test")
    assert read_env_file(path) == values
    assert path.stat().st_mode & 0o777 == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_env_file_interpolates_secret_references_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "a.env"
    path.write_text("ZAPTRA_API_TOKEN=${ZAPTRA_API_TOKEN}\n")
    monkeypatch.setenv("ZAPTRA_API_TOKEN", TOKEN)
    assert read_env_file(path)["ZAPTRA_API_TOKEN"] == TOKEN
