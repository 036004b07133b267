"""The engine commands' own options: a usage error comes before any output."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import inprocess

SHIPPED = Path(__file__).resolve().parents[2] / "playbooks" / "whatsapp.yaml"


@pytest.mark.parametrize("half", [["--preflight"], ["--env", "production"]])
def test_validate_says_preflight_and_env_go_together_before_calling_the_playbook_valid(tmp_path, half):
    done = inprocess.run(["validate", str(SHIPPED), *half], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == "Error: --preflight and --env go together"
