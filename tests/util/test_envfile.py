"""Env files: a secrets file a person hands rollout is read strictly, each bad line named."""

from __future__ import annotations

import pytest

from rollout.util.envfile import read_env_file
from rollout.util.errors import ConfigError
from tests.support import inprocess


def test_a_secrets_file_line_that_is_not_key_value_is_named_with_its_line(tmp_path):
    secrets = tmp_path / "secrets.env"
    secrets.write_text("# the tokens\nSHOP_TOKEN=abc\nthis is not an assignment\nOTHER=1\n")
    with pytest.raises(ConfigError, match=r"secrets\.env:3: not a KEY=VALUE line"):
        read_env_file(secrets, strict=True)
    # the service's own env file is read as before: the bad line skipped, the others kept
    assert read_env_file(secrets) == {"SHOP_TOKEN": "abc", "OTHER": "1"}


def test_the_cli_says_the_bad_line_of_a_secrets_file_in_one_line(tmp_path):
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "production.yaml").write_text(
        "name: production\nservice_url: http://127.0.0.1:1\nenv_file: service.env\nvariables: {SHOP_TOKEN: '${SHOP_TOKEN}'}\n"
    )
    (tmp_path / "playbook.yaml").write_text(
        "version: 1\nname: shop\ntarget: {kind: http, health: {url: /healthz}}\n"
        "gates: {g: {window: 1m, metrics: [{metric: up, provider: p, kind: gauge, query: {url: /s, value: v}, target: 1,"
        " alert: 0, min_samples: 1}]}}\nproviders: {p: {kind: http}}\n"
        "phases: [{name: production, environment: production, steps: [{kind: configure}, {kind: gate, gate: g}]}]\n"
    )
    (tmp_path / "secrets.env").write_text("SHOP_TOKEN=abc\ngarbage line\n")
    done = inprocess.run(
        ["plan", "--env", "production", "--playbook", "playbook.yaml", "--secrets-file", "secrets.env"], cwd=tmp_path
    )
    print(done.stdout, done.stderr)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "rollout: secrets.env:2: not a KEY=VALUE line (a value with spaces is quoted)"
    ]
