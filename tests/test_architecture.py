"""The house keeps its shape: the layers and the product's independence (import-linter), lint and
format (ruff), types (mypy), the docs site (mkdocs, strict), and every complete playbook the docs show
validates as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rollout.playbook.load import load_playbook

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(tool: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``tool`` from this environment (installed with the test extra), in the repository."""
    path = BIN / tool
    if not path.exists():
        found = shutil.which(tool)
        assert found, f"{tool} is not installed: pip install -e '.[test]'"
        path = Path(found)
    return subprocess.run(
        [str(path), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_layers_hold_and_the_product_imports_nothing_of_the_tool():
    done = run("lint-imports")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def test_ruff_finds_nothing_and_the_code_is_formatted():
    lint = run("ruff", "check", "rollout", "tests", "benchmarks")
    assert lint.returncode == 0, lint.stdout[-4000:]
    formatted = run("ruff", "format", "--check", "rollout", "tests", "benchmarks")
    assert formatted.returncode == 0, formatted.stdout[-4000:]


def test_mypy_finds_nothing():
    done = run("mypy")
    assert done.returncode == 0, done.stdout[-4000:]


def test_the_docs_site_builds_with_no_broken_link(tmp_path):
    done = run("mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "own-service" / "index.html").exists()


def doc_playbooks() -> list[tuple[str, str]]:
    found = []
    for page in sorted((REPO / "docs").glob("*.md")):
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), flags=re.S):
            if re.search(r"^version:", block, flags=re.M) and re.search(r"^phases:", block, flags=re.M):
                found.append((page.name, block))
    return found


@pytest.mark.parametrize(("page", "text"), doc_playbooks(), ids=lambda v: v if v.endswith(".md") else "")
def test_every_playbook_the_docs_show_validates(tmp_path, page, text):
    path = tmp_path / "playbook.yaml"
    path.write_text(text)
    book = load_playbook(path, environ={})
    assert book.phases, page


def test_the_docs_show_at_least_the_guides_playbook():
    assert "own-service.md" in {page for page, _ in doc_playbooks()}
