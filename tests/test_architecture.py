"""The house keeps its shape: the layers and the product's independence (import-linter), lint and
format (ruff), types (mypy), the docs site (mkdocs, strict), and every complete playbook the docs show
validates as written."""

from __future__ import annotations

import ast
import functools
import io
import os
import re
import shutil
import subprocess
import sys
import tokenize
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
    assert "4 kept, 0 broken" in done.stdout


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


#: ``rollout.a.b`` in prose, not inside a path or a file name (``/run/secrets/rollout.env``) or an address
_DOTTED = re.compile(r"(?<![\w/.@-])rollout(?:\.[A-Za-z_]\w*)+")


def _names(tree: ast.AST) -> set[str]:
    """The names a module (or class body) defines at its top level."""
    names: set[str] = set()
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.If | ast.Try):
            names |= _names(node)
    return names


@functools.cache
def _tree(source: Path) -> ast.Module:
    return ast.parse(source.read_text())


@functools.cache
def _resolves(dotted: str) -> bool:
    """Whether ``rollout.x.y[.Name[.attr]]`` names a module of the package, and a name defined in it."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:cut])
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if not source.is_file():
            continue
        scope: ast.AST = _tree(source)
        for name in parts[cut:]:
            if name not in _names(scope):
                return False
            scope = next(
                (n for n in getattr(scope, "body", []) if isinstance(n, ast.ClassDef) and n.name == name), ast.Module()
            )
        return True
    return False


def _prose(source: str) -> list[tuple[int, str]]:
    """The docstrings and comments of a module, each with its first line number."""
    commented = re.search(r"#.*rollout\.", source)  # tokenizing is the slow part: only where it can find one
    tokens = tokenize.generate_tokens(io.StringIO(source).readline) if commented else iter(())
    found = [(t.start[0], t.string) for t in tokens if t.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                found.append((first.lineno, first.value.value))
    return found


def test_every_module_path_a_docstring_or_comment_names_exists():
    stale = [
        f"{path.relative_to(REPO)}:{line}: {ref}"
        for path in sorted((REPO / "rollout").rglob("*.py"))
        for line, text in _prose(path.read_text())
        for ref in _DOTTED.findall(text)
        if not _resolves(ref)
    ]
    assert not stale, "docstrings or comments name rollout paths that do not exist:\n" + "\n".join(stale)


def test_the_module_path_check_tells_a_stale_path_from_a_current_one():
    assert _resolves("rollout.util.errors.RolloutError")
    assert _resolves("rollout.engine.state.StateStore")
    assert not _resolves("rollout.errors.RolloutError")
    assert not _resolves("rollout.util.errors.NoSuchError")
    assert _DOTTED.findall("see :mod:`rollout.compare`; secrets in /run/secrets/rollout.env") == ["rollout.compare"]
