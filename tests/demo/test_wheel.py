"""The wheel works anywhere (issue 28, item 3): the shipped playbook and environments are package
data, and ``rollout demo`` runs from an empty folder with nothing of the checkout around.

The repository keeps ``playbooks/`` and ``environments/`` at its root (what people read and edit);
``rollout/demo/shipped/`` holds two symlinks to them, which a build follows. These tests pin both
halves: the links point at the root folders, and the built wheel carries byte-identical copies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rollout.demo import copy_shipped

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "rollout" / "demo" / "shipped"
COPIED = ("playbooks", "environments")


def root_files() -> dict[str, bytes]:
    """The repository's own playbooks and environments, as ``folder/name`` -> bytes."""
    return {f"{d}/{p.name}": p.read_bytes() for d in COPIED for p in sorted((REPO / d).glob("*.yaml"))}


def test_the_package_data_is_the_repositorys_own_files_through_two_symlinks(tmp_path):
    for folder in COPIED:
        link = SHIPPED / folder
        assert link.is_symlink() and link.resolve() == (REPO / folder).resolve(), link
    copied = copy_shipped(tmp_path / "copy")
    assert {f"{d}/{p.name}": p.read_bytes() for d in COPIED for p in sorted((copied / d).glob("*.yaml"))} == (
        root_files()
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
# one whole demo at a time on the two cores: its staging load step judges p99 latency
@pytest.mark.xdist_group("demo")
def test_the_built_wheel_installed_in_a_fresh_venv_runs_the_demo_from_an_empty_folder(tmp_path):
    # build from a copy of the working tree (links kept as links), so the build writes nothing here
    source = tmp_path / "source"
    shutil.copytree(
        REPO,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", ".rollout", "*.egg-info", "__pycache__", "*_cache", "site", "test-*"
        ),
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("rollout-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            name.removeprefix("rollout/demo/shipped/"): archive.read(name)
            for name in archive.namelist()
            if name.startswith("rollout/demo/shipped/")
        }
    assert shipped == root_files()  # copies, byte for byte, and nothing else

    # a fresh venv without pip of its own (ensurepip installing pip costs seconds): this pip installs into it
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-compile", str(wheel)],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ROLLOUT_", "PYTHON", "VIRTUAL_ENV"))}
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import rollout; print(rollout.__file__)"],
        cwd=empty,
        capture_output=True,
        text=True,
        env=environ,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout  # the wheel, not the checkout
    demo = subprocess.run(
        [str(venv / "bin" / "rollout"), "demo"], cwd=empty, capture_output=True, text=True, timeout=400, env=environ
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "as expected: production ended completed" in demo.stdout
    [run] = (empty / ".rollout" / "demo").iterdir()
    assert (run / "shipped" / "playbooks" / "whatsapp.yaml").read_bytes() == root_files()["playbooks/whatsapp.yaml"]
    assert (run / "state.db").exists()
    leftovers = subprocess.run(["pgrep", "-f", str(run)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""  # every process it started is gone
