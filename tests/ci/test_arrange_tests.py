"""``scripts/arrange-tests`` (issue 28, item 6) on a small repository made here from its own tables: every
test file and harness moved to its folder, imports (relative ones too), paths and ``Path(__file__).parents[1]`` rewritten, the
tests still found and passing, a second run a no-op, an unknown file named, a dirty tree refused."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "arrange-tests"

TABLES = runpy.run_path(str(SCRIPT))  # the script's own tables (GROUPS, SUPPORT)

#: runs pytest in the made repository three times
pytestmark = pytest.mark.slow

TEST_FILE = """from pathlib import Path

import pytest

from tests.harness import MARK

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_found_from_its_folder():
    assert MARK == "harness" and (REPO / "docs" / "page.md").exists()
"""


# the made repository's pytest is not a worker of this run's xdist
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout


def arrange(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(repo / "scripts" / "arrange-tests"), *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding the script and a flat tests/ with every entry of its tables."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPT, repo / "scripts" / "arrange-tests")
    tests = repo / "tests"
    tests.mkdir()
    (tests / "__init__.py").write_text("")
    (tests / "conftest.py").write_text("from tests.postgres import NAME  # noqa: F401\n")
    (repo / "pyproject.toml").write_text('[tool.pytest.ini_options]\nmarkers = ["slow: slow"]\n')
    for _folder, (_why, files) in TABLES["GROUPS"].items():
        for name in files:
            (tests / name).write_text(TEST_FILE)
    for name in TABLES["VERBATIM"]:  # moved with its text as it is, but for its way up to the repository
        (tests / name).write_text(TEST_FILE.replace("from tests.harness import MARK", 'MARK = "harness"'))
    for name in TABLES["SUPPORT"]:
        if name.endswith(".py"):
            (tests / name).write_text(f"MARK = {name[:-3]!r}\nNAME = MARK\n")
        else:
            (tests / name).mkdir()
            (tests / name / "__init__.py").write_text("HERE = 'a folder'\n")
            (tests / name / "package.json").write_text("{}\n")
    (tests / "test_phones.py").write_text(TEST_FILE.replace("from tests.harness import", "from .harness import"))
    (repo / "docs").mkdir()
    (repo / "docs" / "page.md").write_text(
        "See `tests/test_engine.py::test_found_from_its_folder`, `tests/harness.py`, "
        "`tests/unleash/package.json`, :mod:`tests.hostile` and `tests/test_promote.py`.\n"
    )
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "flat")
    return repo


def test_arranges_rewrites_proves_the_collection_and_runs_again_as_a_no_op(repo: Path):
    planned = arrange(repo, "--check")
    assert planned.returncode == 0, planned.stderr
    assert "git mv tests/test_engine.py tests/engine/test_engine.py" in planned.stdout
    assert "git mv tests/unleash tests/support/unleash" in planned.stdout
    assert git(repo, "status", "--porcelain") == ""  # --check touched nothing

    done = arrange(repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the same tests under the same names apart from the folder" in done.stdout
    moved = repo / "tests" / "engine" / "test_engine.py"
    assert "from tests.support.harness import MARK" in moved.read_text()
    assert "parents[2]" in moved.read_text()
    assert "from tests.support.harness import MARK" in (repo / "tests" / "booking" / "test_phones.py").read_text()
    assert "parents[3]" in (repo / "tests" / "booking" / "service" / "test_settings.py").read_text()
    assert "parents[1]" in (repo / "tests" / "test_promote.py").read_text()  # stays at tests/
    assert (repo / "tests" / "support" / "unleash" / "package.json").exists()
    assert (repo / "tests" / "booking" / "service" / "__init__.py").exists()
    assert "from tests.support.postgres import" in (repo / "tests" / "conftest.py").read_text()
    assert (repo / "docs" / "page.md").read_text() == (
        "See `tests/engine/test_engine.py::test_found_from_its_folder`, `tests/support/harness.py`, "
        "`tests/support/unleash/package.json`, :mod:`tests.support.hostile` and `tests/test_promote.py`.\n"
    )
    assert sorted(p.name for p in (repo / "tests").glob("test_*.py")) == sorted(TABLES["GROUPS"][""][1])
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert ran.returncode == 0, ran.stdout[-2000:]

    git(repo, "commit", "-q", "-m", "arranged")
    again = arrange(repo)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr
    assert git(repo, "status", "--porcelain") == ""


def test_a_file_in_no_table_is_named_and_nothing_moves(repo: Path):
    (repo / "tests" / "test_from_another_branch.py").write_text("def test_x():\n    pass\n")
    (repo / "tests" / "new_harness.py").write_text("")
    done = arrange(repo)
    assert done.returncode == 1
    assert "tests/new_harness.py" in done.stderr and "tests/test_from_another_branch.py" in done.stderr
    assert (repo / "tests" / "test_engine.py").exists()


def test_a_dirty_tree_is_refused_in_one_line(repo: Path):
    (repo / "docs" / "page.md").write_text("changed\n")
    done = arrange(repo, "--no-verify")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "scripts/arrange-tests: the working tree has changes; commit or stash them first (the result is left staged for review)"
    ]
    assert (repo / "tests" / "test_engine.py").exists()
