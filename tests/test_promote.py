"""Git promotions against real temporary repositories with a bare remote."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from rollout.console import QuietReporter
from rollout.engine.project import Project, open_context
from rollout.engine.state import StateStore
from rollout.promote import PromotionError, promote
from rollout.util.clock import ManualClock
from rollout.util.errors import StateError


def commit(repo: git.Repo, name: str, text: str, message: str) -> str:
    path = Path(repo.working_dir) / name
    path.write_text(text)
    repo.index.add([name])
    return repo.index.commit(message).hexsha


@pytest.fixture
def repo(tmp_path) -> git.Repo:
    remote = git.Repo.init(tmp_path / "remote.git", bare=True, initial_branch="main")
    repo = git.Repo.init(tmp_path / "work", initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "t")
        config.set_value("user", "email", "t@example.invalid")
    commit(repo, "app.txt", "v1\n", "initial")
    repo.create_remote("origin", remote.working_dir)
    repo.git.branch("staging")
    repo.git.checkout("-b", "feature/whatsapp-integration")
    commit(repo, "whatsapp.txt", "send\n", "Add WhatsApp integration")
    repo.git.checkout("main")
    repo.git.push("origin", "main", "staging", "feature/whatsapp-integration")
    return repo


def snapshot(repo: git.Repo) -> tuple:
    return (
        repo.head.ref.name,
        {h.name: h.commit.hexsha for h in repo.heads},
        repo.is_dirty(untracked_files=True),
        repo.git.status("--porcelain"),
    )


def test_clean_promotion_merges_and_pushes(repo):
    result = promote(Path(repo.working_dir), "feature/whatsapp-integration", "staging")
    assert result.pushed and [s for _, s in result.commits] == ["Add WhatsApp integration"]
    remote = git.Repo(repo.remotes.origin.url)
    assert remote.heads["staging"].commit.hexsha == result.merged_sha
    assert repo.head.ref.name == "main"  # the original branch is checked out again
    assert "whatsapp.txt" in [b.path for b in remote.heads["staging"].commit.tree.blobs]


def test_dry_run_lists_the_commits_and_touches_nothing(repo):
    before = snapshot(repo)
    result = promote(Path(repo.working_dir), "feature/whatsapp-integration", "staging", dry_run=True)
    assert [s for _, s in result.commits] == ["Add WhatsApp integration"] and not result.pushed
    assert snapshot(repo) == before


def test_conflict_leaves_the_repository_untouched(repo):
    repo.git.checkout("staging")
    commit(repo, "whatsapp.txt", "something else\n", "Conflicting change on staging")
    repo.git.checkout("main")
    before = snapshot(repo)
    with pytest.raises(PromotionError, match=r"conflicts in whatsapp.txt.*merge aborted, nothing changed"):
        promote(Path(repo.working_dir), "feature/whatsapp-integration", "staging")
    assert snapshot(repo) == before


def test_rejected_push_resets_the_target(repo, tmp_path):
    # someone else pushed to staging meanwhile: ours is not a fast-forward of the remote's
    other = git.Repo.clone_from(repo.remotes.origin.url, tmp_path / "other")
    with other.config_writer() as config:
        config.set_value("user", "name", "o")
        config.set_value("user", "email", "o@example.invalid")
    other.git.checkout("staging")
    commit(other, "hotfix.txt", "fix\n", "Hotfix on staging")
    other.git.push("origin", "staging")
    before = snapshot(repo)
    with pytest.raises(PromotionError, match=r"pushing staging to origin was rejected.*nothing changed"):
        promote(Path(repo.working_dir), "feature/whatsapp-integration", "staging")
    assert snapshot(repo) == before


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda r: (Path(r.working_dir) / "stray.txt").write_text("x"), "working tree is dirty"),
        (lambda r: None, "source branch 'feature/missing' does not exist"),
    ],
)
def test_refusals(repo, setup, message):
    setup(repo)
    source = "feature/missing" if "missing" in message else "feature/whatsapp-integration"
    with pytest.raises(PromotionError, match=message):
        promote(Path(repo.working_dir), source, "staging")


def test_missing_remote_is_refused(repo):
    with pytest.raises(PromotionError, match="remote 'upstream' is not configured"):
        promote(Path(repo.working_dir), "feature/whatsapp-integration", "staging", remote="upstream")


PLAYBOOK = """\
version: 1
name: promote-test
gates:
  g: {window: 60s, min_samples: 1, metrics: [{metric: success_rate, target: 95%, alert: 90%}]}
watch: {gate: g, interval: 1s}
phases:
  - name: staging
    environment: staging
    steps:
      - {kind: promote, source: feature/whatsapp-integration, target: staging}
  - name: production
    environment: production
    steps:
      - {kind: promote, source: staging, target: main, require_evidence_from: staging}
"""


def project_for(tmp_path: Path, repo: git.Repo) -> Project:
    (tmp_path / "envs").mkdir()
    for env in ("staging", "production"):
        (tmp_path / "envs" / f"{env}.yaml").write_text(
            f"name: {env}\nservice_url: http://127.0.0.1:9\nenv_file: {tmp_path / env}.env\n"
        )
    (tmp_path / "p.yaml").write_text(PLAYBOOK)
    return Project(tmp_path / "p.yaml", tmp_path / "envs", tmp_path / "state.db", repo_path=Path(repo.working_dir))


def advance(project: Project, env: str, override: str | None = None):
    from rollout.engine.runner import advance as run

    with open_context(project, env, ManualClock(), QuietReporter()) as ctx:
        ctx.override_evidence = override
        return run(ctx)


def test_production_promotion_needs_staging_evidence_for_that_commit(repo, tmp_path):
    project = project_for(tmp_path, repo)
    assert advance(project, "staging").status == "completed"
    staging_sha = repo.heads["staging"].commit.hexsha
    state = StateStore(project.state_path)
    assert state.get("staging").commit_sha == staging_sha  # status shows which commit staging runs
    state.close()
    # a new commit lands on staging after its gates passed: that commit has no evidence
    repo.git.checkout("staging")
    commit(repo, "late.txt", "late\n", "Late change")
    repo.git.checkout("main")
    before = snapshot(repo)
    with pytest.raises(StateError, match=r"has not passed the staging gates.*--override-evidence"):
        advance(project, "production")
    assert snapshot(repo) == before
    # an explicit override is possible and recorded
    outcome = advance(project, "production", override="hotfix approved by the CTO")
    assert outcome.status == "completed"
    state = StateStore(project.state_path)
    [entry] = [a for a in state.audit_log("production") if a["action"] == "evidence_overridden"]
    assert entry["detail"]["reason"] == "hotfix approved by the CTO"
    assert state.get("production").commit_sha == git.Repo(repo.remotes.origin.url).heads["main"].commit.hexsha
    state.close()


def test_production_promotion_with_evidence_goes_through(repo, tmp_path):
    project = project_for(tmp_path, repo)
    assert advance(project, "staging").status == "completed"
    outcome = advance(project, "production")
    assert outcome.status == "completed"
    assert "Late change" not in [c.summary for c in git.Repo(repo.remotes.origin.url).iter_commits("main")]


def test_plan_lists_the_commits_a_promotion_would_bring_and_touches_nothing(repo, tmp_path):
    import json
    import os
    import subprocess
    import sys

    project = project_for(tmp_path, repo)
    before = snapshot(repo)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rollout",
            "advance",
            "--env",
            "staging",
            "--dry-run",
            "--json",
            "--playbook",
            str(project.playbook_path),
            "--environments",
            str(project.environments_dir),
            "--state",
            str(project.state_path),
            "--repo",
            repo.working_dir,
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr
    [commits] = json.loads(proc.stdout)["promotions"].values()
    assert [c["summary"] for c in commits] == ["Add WhatsApp integration"]
    assert snapshot(repo) == before
    assert not project.state_path.exists() or StateStore(project.state_path).audit_log("staging") == []
