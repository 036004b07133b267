"""Every command that records or checks a commit reads it in ``--repo`` (issue 32, part 1).

The issue's sequence through the CLI (the installed ``rollout`` script, as a user runs it), with the
checkout in a folder of its own and the current folder another git repository whose commit must never
be the one recorded: promote a feature into staging, a late commit on staging is refused for
production, ``gate`` at that commit gives it its evidence, production promotes it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import git
import pytest

from rollout.util.serving import ServerThread
from tests.support import inprocess
from tests.support.standin import create_standin

PLAYBOOK = """\
version: 1
name: repo-commits
target:
  kind: http
  health: {url: /healthz, expect: {status: 200}}
flag: {variable: FEATURE_ON, percent_variable: FEATURE_SHARE}
providers: {stats: {kind: http}}
gates:
  g:
    window: 1m
    metrics:
      - {metric: errors, provider: stats, kind: rate, target: 1%, alert: 5%,
         query: {url: /stats, value: new_path.error_rate, samples: new_path.requests}}
phases:
  - name: staging
    environment: staging
    steps:
      - {kind: promote, name: deploy to staging, source: feature/x, target: staging}
      - {kind: configure, set: {FEATURE_ON: "true", FEATURE_SHARE: "100"}}
      - kind: smoke
        name: staging answers
        checks: [{type: http, name: health, path: /healthz, expect: {status: 200, json: {status: ok}}}]
  - name: production
    environment: production
    steps:
      - {kind: promote, name: deploy to production, source: staging, target: main, require_evidence_from: staging}
"""


def commit(repo: git.Repo, name: str, message: str) -> str:
    (Path(repo.working_dir) / name).write_text(message + "\n")
    repo.index.add([name])
    return repo.index.commit(message).hexsha


def init(path: Path) -> git.Repo:
    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "tester")
        config.set_value("user", "email", "tester@rollout.invalid")
    return repo


@pytest.fixture
def setup(tmp_path):
    """(cwd, checkout, remote, files, run): the current folder is a git repository of its own."""
    service = ServerThread(create_standin()).start()
    remote = git.Repo.init(tmp_path / "remote.git", bare=True, initial_branch="main")
    checkout = init(tmp_path / "checkout")
    commit(checkout, "app.txt", "initial")
    checkout.create_remote("origin", remote.working_dir)
    checkout.git.branch("staging")
    checkout.git.checkout("-b", "feature/x")
    commit(checkout, "x.txt", "Feature x")
    checkout.git.checkout("main")
    checkout.git.push("origin", "main", "staging", "feature/x")
    cwd = init(tmp_path / "elsewhere")
    commit(cwd, "other.txt", "another project")
    files = tmp_path / "files"
    (files / "environments").mkdir(parents=True)
    for env in ("staging", "production"):
        (files / "environments" / f"{env}.yaml").write_text(
            f"name: {env}\nservice_url: {service.url}\nenv_file: {files / env}.env\n"
        )
    (files / "playbook.yaml").write_text(PLAYBOOK)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ROLLOUT_")}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        common = ["--playbook", str(files / "playbook.yaml"), "--environments", str(files / "environments")]
        common += ["--state", str(files / "state.db")]
        return inprocess.run([*args, *common], cwd=cwd.working_dir, timeout=120, env={**environ, **extra})

    yield Path(cwd.working_dir), checkout, remote, files, run
    service.stop()


@pytest.mark.slow
def test_gate_advance_and_status_read_the_commit_in_repo_not_the_current_folder(setup):
    cwd, checkout, remote, _files, run = setup
    here = git.Repo(cwd).head.commit.hexsha
    repo = checkout.working_dir

    done = run("advance", "--env", "staging", "--repo", repo)
    assert done.returncode == 0, done.stdout + done.stderr
    merged = remote.heads["staging"].commit.hexsha
    assert merged == checkout.heads["staging"].commit.hexsha != here

    # a commit lands on staging after its gates passed: production refuses it, main is untouched
    checkout.git.checkout("staging")
    late = commit(checkout, "late.txt", "Late change")
    main_before = remote.heads["main"].commit.hexsha
    refused = run("advance", "--env", "production", "--repo", repo)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"commit {late[:12]} of staging has not passed the staging gates" in refused.stderr
    assert remote.heads["main"].commit.hexsha == main_before

    shown = run("status", "--json", "--repo", repo)
    assert shown.returncode == 0, shown.stderr
    [production] = [row for row in json.loads(shown.stdout) if row["name"] == "production"]
    [pending] = production["promotions"]
    assert (pending["source"], pending["commit"], pending["evidence"]) == ("staging", late, None)
    table = run("status", "--repo", repo)
    assert f"staging at {late[:12]} has no staging evidence yet" in table.stdout, table.stdout

    # with staging checked out in the checkout, gate records ITS commit, not the current folder's
    gated = run("gate", "--env", "staging", "--repo", repo)
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert f"at commit {late[:12]}" in gated.stdout and here[:12] not in gated.stdout
    shown = run("status", "--json", "--repo", repo)
    [production] = [row for row in json.loads(shown.stdout) if row["name"] == "production"]
    assert production["promotions"][0]["evidence"]["action"] == "gate_passed"

    done = run("advance", "--env", "production", "--repo", repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert late in {c.hexsha for c in remote.iter_commits("main")}
    assert checkout.head.ref.name == "staging"  # the checkout is left on the branch it was on


@pytest.mark.slow
def test_rollout_repo_in_the_environment_is_the_same_as_the_option(setup):
    _cwd, checkout, _remote, _files, run = setup
    gated = run("gate", "--env", "staging", "--json", ROLLOUT_REPO=checkout.working_dir)
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert json.loads(gated.stdout)["commit"] == checkout.head.commit.hexsha
    # --commit still names the commit under test, whatever --repo holds
    named = run("gate", "--env", "staging", "--json", "--commit", "abc123", "--repo", checkout.working_dir)
    assert json.loads(named.stdout)["commit"] == "abc123"


@pytest.mark.parametrize(
    "command",
    [["gate", "--env", "staging"], ["advance", "--env", "staging"], ["status"]],
    ids=["gate", "advance", "status"],
)
def test_a_repo_that_is_not_a_git_repository_is_one_line_and_exit_2(setup, tmp_path, command):
    _cwd, checkout, _remote, files, run = setup
    plain = tmp_path / "not-a-repo"
    plain.mkdir()
    before = checkout.heads["staging"].commit.hexsha
    proc = run(*command, "--repo", str(plain))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == (
        f"rollout: --repo {plain}: not a git repository (commits are read there; "
        "`rollout gate --commit SHA` names one instead)"
    )
    assert checkout.heads["staging"].commit.hexsha == before and not (files / "staging.env").exists()
