"""Environments resolve secret references; the flag store never loses a write; the state is durable."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rollout.engine.state import ROLLED_BACK, StateStore
from rollout.flags import FlagStore
from rollout.playbook.environments import load_environment, resolve, shown_diff
from rollout.util.errors import ConfigError, StateError

REPO = Path(__file__).resolve().parents[2]
TOKEN = "zaptra-secret-value-123"


@pytest.mark.parametrize("name", ["dev", "staging", "production"])
def test_shipped_environments_load_and_keep_secrets_as_references(name):
    env = load_environment(name, REPO / "environments", environ={})
    assert env.variables["ZAPTRA_API_TOKEN"] == "${ZAPTRA_API_TOKEN}"
    assert env.variables["WHATSAPP_NOTIFICATIONS_ENABLED"] == "false"
    resolved = resolve(
        env,
        environ={
            "ZAPTRA_API_TOKEN": TOKEN,
            "ROLLOUT_ADMIN_TOKEN": "admin-secret-456",
            "ZAPTRA_SANDBOX_TOKEN": "sandbox-secret-789",
        },
    )
    assert resolved.values["ZAPTRA_API_TOKEN"] == TOKEN and TOKEN in resolved.secrets
    assert resolved.shown()["ZAPTRA_API_TOKEN"] == "***"
    assert TOKEN not in str(shown_diff(resolved, {}))


def env_file(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "environments"
    folder.mkdir(exist_ok=True)
    (folder / "prod.yaml").write_text(body)
    return folder


def test_a_literal_secret_in_an_environment_file_is_refused(tmp_path):
    folder = env_file(
        tmp_path,
        "name: prod\nservice_url: http://127.0.0.1:1\nenv_file: x.env\nvariables:\n  ZAPTRA_API_TOKEN: abc123secret\n",
    )
    with pytest.raises(
        ConfigError, match=r"prod.yaml:5: variables.ZAPTRA_API_TOKEN: ZAPTRA_API_TOKEN must be a reference"
    ):
        load_environment("prod", folder, environ={})


def test_secret_from_a_secrets_file_and_a_missing_one(tmp_path):
    folder = env_file(
        tmp_path,
        "name: prod\nservice_url: http://127.0.0.1:1\nenv_file: x.env\n"
        "variables:\n  ZAPTRA_API_TOKEN: ${ZAPTRA_API_TOKEN}\n",
    )
    env = load_environment("prod", folder, environ={})
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"ZAPTRA_API_TOKEN={TOKEN}\n")
    assert resolve(env, environ={}, secrets_file=secrets).values["ZAPTRA_API_TOKEN"] == TOKEN
    assert (
        resolve(env, environ={"ZAPTRA_API_TOKEN": "from-env-wins"}, secrets_file=secrets).values["ZAPTRA_API_TOKEN"]
        == "from-env-wins"
    )
    with pytest.raises(ConfigError, match=r"environment prod: ZAPTRA_API_TOKEN: \$\{ZAPTRA_API_TOKEN\} is not set"):
        resolve(env, environ={})


def test_unknown_environment_lists_the_known_ones(tmp_path):
    folder = env_file(tmp_path, "name: prod\nservice_url: http://127.0.0.1:1\nenv_file: x.env\n")
    with pytest.raises(ConfigError, match=r"no such environment 'staging' \(known: prod\)"):
        load_environment("staging", folder)


def test_flag_store_guard_refuses_inside_the_lock(tmp_path):
    flags = FlagStore(tmp_path / "svc.env")
    flags.replace({"WHATSAPP_NOTIFICATIONS_ENABLED": "false", "OTHER": "kept"})
    flags.set(enabled=True, percent=25)
    assert flags.state() == (True, 25) and flags.read()["OTHER"] == "kept"

    def refuse() -> None:
        raise ConfigError("rolled back meanwhile")

    with pytest.raises(ConfigError):
        flags.set(percent=50, guard=refuse)
    assert flags.state() == (True, 25)


def test_concurrent_writers_lose_nothing(tmp_path):
    flags = FlagStore(tmp_path / "svc.env")
    flags.replace({"WHATSAPP_NOTIFICATIONS_ENABLED": "true", "WHATSAPP_ROLLOUT_PERCENT": "0"})
    barrier = threading.Barrier(8)

    def writer(n: int) -> None:
        barrier.wait()
        for i in range(25):
            with flags._locked():
                values = flags.read()
                values[f"W{n}"] = str(i)
                from rollout.util.envfile import write_env_file

                write_env_file(flags.env_file, values)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    values = flags.read()
    assert all(values[f"W{n}"] == "24" for n in range(8))


def test_audit_log_is_append_only(tmp_path):
    state = StateStore(tmp_path / "state.db")
    state.audit("production", "flag_off", 1.0, who="tester", reason="x")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        state._db.execute("UPDATE audit SET action = 'nothing'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        state._db.execute("DELETE FROM audit")
    assert [a["action"] for a in state.audit_log("production")] == ["flag_off"]


def test_writer_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    path = tmp_path / "state.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from rollout.engine.state import StateStore; "
                f"s = StateStore({str(path)!r}); s.acquire('production', 0.0); print('held', flush=True); time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        state = StateStore(path)
        with pytest.raises(StateError, match="is being advanced by"):
            state.acquire("production", 1.0)
    finally:
        holder.kill()
        holder.wait()
    note = state.acquire("production", 2.0)
    assert note and "stale lock" in note
    state.release("production")
    assert state.holder("production") is None


def test_state_survives_reopening(tmp_path):
    state = StateStore(tmp_path / "state.db")
    state.update("production", 5.0, status=ROLLED_BACK, percent=25, flag=False, reason="breach")
    state.close()
    again = StateStore(tmp_path / "state.db").get("production")
    assert (again.status, again.percent, again.flag, again.reason) == (ROLLED_BACK, 25, False, "breach")


def test_flag_writes_and_configure_keep_the_users_own_lines(tmp_path):
    from rollout.playbook.environments import Environment, resolve

    env_file = tmp_path / "service.env"
    env_file.write_text(
        "# my service\nDATABASE_URL=postgresql://db/app\nexport WHATSAPP_NOTIFICATIONS_ENABLED=true\n"
        "\n# tuning\nWHATSAPP_ROLLOUT_PERCENT = 10\nOTHER='keep me'\n"
    )
    flags = FlagStore(env_file)
    flags.set(enabled=False, percent=25)
    text = env_file.read_text()
    assert text == (
        "# my service\nDATABASE_URL=postgresql://db/app\nexport WHATSAPP_NOTIFICATIONS_ENABLED=false\n"
        "\n# tuning\nWHATSAPP_ROLLOUT_PERCENT=25\nOTHER='keep me'\n"
    )
    env = Environment(
        name="dev",
        service_url="http://127.0.0.1:1",
        env_file=env_file,
        variables={"WHATSAPP_DEBUG": "true", "WHATSAPP_NOTIFICATIONS_ENABLED": "false"},
    )
    flags.replace(resolve(env, environ={}).values)
    values = flags.read()
    assert values["DATABASE_URL"] == "postgresql://db/app" and values["OTHER"] == "keep me"
    assert values["WHATSAPP_DEBUG"] == "true" and "# tuning" in env_file.read_text()
    assert flags.state() == (False, 25)
