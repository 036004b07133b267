"""The servers the suite needs, installed the same way by .ci/run and the GitHub workflow (issue 32).

What can be checked here: the workflow's test job runs ``scripts/install-test-deps`` and then the
README's test command, as written in the README; the script covers the one list
(``tests/support/requirements_servers.py``) that the suite's skip and fail-in-CI messages name; as a user who
is neither root nor has sudo, the script says what it cannot install and how. What cannot: the
workflow itself on a GitHub runner (docs/development.md says so).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.support.requirements_servers import INSTALLER, REQUIREMENTS, postgres_bindir, unavailable

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / INSTALLER


def readme_test_command() -> str:
    """The README's quick-start line that installs and runs the tests."""
    lines = (REPO / "README.md").read_text().splitlines()
    at = lines.index(
        "# install and run the tests (scripts/install-unleash fetches the Unleash server the tests start, with npm)"
    )
    return lines[at + 1].strip()


def test_the_workflow_test_job_installs_the_servers_then_runs_the_readmes_test_command():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "staging-gates.yml").read_text())
    runs = [step.get("run", "").strip() for step in workflow["jobs"]["tests"]["steps"]]
    command = readme_test_command()
    assert command.endswith(".venv/bin/pytest") and "pip install -e '.[test]'" in command
    assert INSTALLER in runs and command in runs, runs
    install, test = runs.index(INSTALLER), runs.index(command)
    assert install < test
    assert not any("pytest" in run for run in runs[:install])  # nothing tests before the servers are there
    # .ci/run (what CI runs here) installs the same way before its fresh virtualenv and the test command
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert ci.index(INSTALLER) < ci.index(".venv/bin/pytest")


def test_the_install_script_covers_the_list_the_skip_messages_name():
    done = subprocess.run([str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, 1), done.stderr
    assert [line.split(":")[1].strip() for line in done.stderr.splitlines()] == list(REQUIREMENTS), done.stderr
    # every helper that starts a server skips (or fails in CI) through the same list, nowhere else
    helpers = {
        "tests/support/postgres.py": "postgresql",
        "tests/support/prometheus.py": "prometheus",
        "tests/support/unleash/__init__.py": "unleash",
        "tests/conftest.py": "chromium",
        "tests/support/alertmanager.py": "alertmanager",
        "tests/agent/test_agent_deploy.py": "systemd",
        "tests/engine/test_backtest_prometheus.py": "promtool",
    }
    for path, key in helpers.items():
        text = (REPO / path).read_text()
        assert f'unavailable("{key}"' in text and "pytest.skip(" not in text, path


def test_a_missing_server_skips_outside_ci_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"prometheus is not installed \(scripts/install-test-deps"):
        unavailable("prometheus")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install postgresql\)"):
        unavailable("postgresql")


def test_as_a_user_without_root_or_sudo_the_script_says_what_to_do():
    """Run as ``nobody`` with a PATH that holds only python3 (so no sudo), in a mount namespace where
    PostgreSQL's programs are hidden: the script must name them, say why it cannot install them and
    how to, exit 1, and try nothing else."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("needs root (to become nobody and to hide a server in a mount namespace), unshare and setpriv")
    bin_dir = Path(tempfile.mkdtemp(prefix="rollout-nobody-"))
    try:
        bin_dir.chmod(0o755)
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        (bin_dir / "python3").symlink_to(python)
        found = postgres_bindir()
        hide = str(found.parents[1]) if found and str(found).startswith("/usr/lib/postgresql/") else ""
        inner = (
            ('mount -t tmpfs none "$1" && ' if hide else "")
            + "exec setpriv --reuid=65534 --regid=65534 --clear-groups "
            + f"env -i PATH={bin_dir} HOME=/nonexistent PYTHONDONTWRITEBYTECODE=1 {SCRIPT}"
        )
        done = subprocess.run(
            ["unshare", "--mount", "sh", "-c", inner, "sh", hide], capture_output=True, text=True, timeout=60
        )
    finally:
        shutil.rmtree(bin_dir, ignore_errors=True)
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = [text for text in done.stderr.splitlines() if "cannot install" in text]
    assert "PostgreSQL server binaries (postgresql)" in line
    assert "not root, and sudo is not available (or asks for a password)" in line
    assert re.search(r"install them yourself: sudo apt-get install .*postgresql", line)
    assert "installing" not in done.stderr  # nothing was attempted
    assert "Traceback" not in done.stderr
