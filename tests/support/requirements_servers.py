"""What the test suite needs on the machine besides Python packages, in one list.

Each real server (or tool) the tests start, how the tests find it, and what installs it. The test
helpers (``tests/support/postgres.py``, ``tests/support/prometheus.py``, ``tests/support/alertmanager.py``, ``tests/support/unleash/``,
the ``chromium`` fixture in ``tests/conftest.py``, ``tests/agent/test_agent_deploy.py``,
``tests/engine/test_backtest_prometheus.py``) find their binaries here and skip (outside CI) or fail (with ``CI`` set)
through :func:`unavailable`; ``scripts/install-test-deps`` installs exactly this list;
``tests/ci/test_ci_install.py`` checks that the GitHub workflow's test job runs that script. One list, so
none of them can drift from the others.

Only the standard library at import time: the install script imports this before any virtualenv exists.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

#: the script that installs everything below
INSTALLER = "scripts/install-test-deps"


def _binary(*names: str) -> str | None:
    """The first of ``names`` on PATH or in /usr/bin (where Debian puts it, whatever PATH says)."""
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    return None


def postgres_bindir() -> Path | None:
    """The folder of PostgreSQL's server programs (``initdb``, ``pg_ctl``): Debian's newest, or on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def prometheus_binary() -> str | None:
    return _binary("prometheus")


def promtool_binary() -> str | None:
    """Prometheus' own tool (in the same Debian package): writes a TSDB of past samples for backtests."""
    return _binary("promtool")


def alertmanager_binary() -> str | None:
    """Debian names it ``prometheus-alertmanager``; upstream's release, ``alertmanager``."""
    return _binary("prometheus-alertmanager", "alertmanager")


def chromium_binary() -> str | None:
    return _binary("chromium")


def wrk_binary() -> str | None:
    return _binary("wrk")


def systemd_analyze_binary() -> str | None:
    """``systemd-analyze``, which verifies the agent's unit file."""
    return _binary("systemd-analyze")


def node_binary() -> str | None:
    """Node.js, with npm beside it (npm installs the Unleash server)."""
    return _binary("node") if _binary("npm") else None


def unleash_home() -> Path:
    """Where ``scripts/install-unleash`` puts npm's ``unleash-server`` (``ROLLOUT_UNLEASH_HOME``)."""
    return Path(os.environ.get("ROLLOUT_UNLEASH_HOME") or Path.home() / ".cache/rollout/unleash-server-8.2.0")


def unleash_installed() -> Path | None:
    home = unleash_home()
    try:
        present = (home / "node_modules" / "unleash-server" / "package.json").is_file()
    except OSError:  # a home this user may not read
        present = False
    return home if present and _binary("node") else None


@dataclass(frozen=True)
class Requirement:
    """One thing the tests start: how to find it, and what installs it."""

    key: str
    what: str
    #: where it is, or None when it is not installed
    locate: Callable[[], object | None]
    #: the Debian packages that install it (none: :attr:`script` does)
    debian: tuple[str, ...] = ()
    #: a script of this repository that installs it (after the Debian packages)
    script: str | None = None
    #: what needs it, for messages and the docs
    used_by: str = ""

    def present(self) -> bool:
        return self.locate() is not None

    def how(self) -> str:
        way = f"apt-get install {' '.join(self.debian)}" if self.debian else str(self.script)
        return f"{INSTALLER} installs it: {way}"


#: everything the test suite (and the benchmarks) start besides Python packages, in install order
REQUIREMENTS: dict[str, Requirement] = {
    r.key: r
    for r in (
        Requirement(
            "postgresql",
            "PostgreSQL server binaries",
            postgres_bindir,
            ("postgresql",),
            used_by="tests/support/postgres.py: the fleet, the shared state, Unleash's database",
        ),
        Requirement(
            "prometheus", "prometheus", prometheus_binary, ("prometheus",), used_by="tests/support/prometheus.py"
        ),
        Requirement(
            "promtool", "promtool", promtool_binary, ("prometheus",), used_by="tests/engine/test_backtest_prometheus.py"
        ),
        Requirement(
            "alertmanager",
            "Alertmanager",
            alertmanager_binary,
            ("prometheus-alertmanager",),
            used_by="tests/support/alertmanager.py: alert gates against a real Alertmanager",
        ),
        Requirement(
            "chromium",
            "chromium",
            chromium_binary,
            ("chromium", "chromium-driver"),
            used_by="tests/dashboard/test_dashboard.py (Playwright drives it)",
        ),
        Requirement("wrk", "wrk", wrk_binary, ("wrk",), used_by="benchmarks/service_throughput.py"),
        Requirement(
            "systemd",
            "systemd-analyze",
            systemd_analyze_binary,
            ("systemd",),
            used_by="tests/agent/test_agent_deploy.py: the agent's unit file verified",
        ),
        Requirement("node", "Node.js and npm", node_binary, ("nodejs", "npm"), used_by="the Unleash server"),
        Requirement(
            "unleash",
            "unleash-server",
            unleash_installed,
            script="scripts/install-unleash",
            used_by="tests/support/unleash/: a real Unleash 8.2.0",
        ),
    )
}


def unavailable(key: str, detail: str = "") -> NoReturn:
    """Skip the calling test, or fail it when ``CI`` is set (a CI run must not pass by skipping),
    naming what is missing and what installs it."""
    import pytest

    requirement = REQUIREMENTS[key]
    where = f" in {detail}" if detail else ""
    message = f"{requirement.what} is not installed{where} ({requirement.how()})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


if __name__ == "__main__":  # a table of what is there, for a person
    for requirement in REQUIREMENTS.values():
        found = requirement.locate()
        print(f"{requirement.key:<13} {'ok' if found else 'MISSING':<8} {found or requirement.how()}")
