"""docs/run-for-real.md, executed: every bash block of the guide, in order, in a fresh workspace with
its own dedicated git clone and free ports. If a step of the guide stops working, this fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rollout.demo import make_git_repo
from rollout.util.serving import free_port

#: starts real servers (or kills real processes): outside the fast loop
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "run-for-real.md"


def guide_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", GUIDE.read_text(), flags=re.S)


def test_the_guide_runs_as_written(tmp_path):
    blocks = guide_blocks()
    assert len(blocks) >= 8  # every section's commands are in the run
    work = tmp_path / "work"
    work.mkdir()
    for folder in ("playbooks", "environments"):
        shutil.copytree(REPO / folder, work / folder)
    app_repo = make_git_repo(tmp_path / "git")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLLOUT_", "ZAPTRA_", "WHATSAPP_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        HOME=str(tmp_path),
        APP_REPO=str(app_repo),
        SANDBOX_PORT=str(free_port()),
        DEV_PORT=str(free_port()),
        STAGING_PORT=str(free_port()),
        PRODUCTION_PORT=str(free_port()),
        ROLLOUT_ACTOR="guide",
    )
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2> /dev/null || true' EXIT\n" + "\n".join(blocks)
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    for expected in (
        "completed: phase dev completed in dev",
        "completed: phase staging completed in staging",
        "completed: phase production completed in production",
        "rolled_back: flag off in production",
        "confirmed by the service",
        "incident report written to incident.html",
    ):
        assert expected in output, (expected, output[-5000:])
    assert "<svg" in (work / "incident.html").read_text()
    # the dedicated clone got both promotions, pushed
    log = subprocess.run(
        ["git", "-C", str(app_repo), "log", "--oneline", "origin/main"], capture_output=True, text=True
    ).stdout
    assert "WhatsApp" in log
    assert "change-me-admin-token" not in output and "change-me-sandbox-token" not in output
