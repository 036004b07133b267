"""Git promotions: merge a source branch into a target branch and push it (gitpython).

Refused with a clear message, the repository left exactly as it was: a dirty working tree, a
missing branch or remote, a merge conflict (the merge is aborted), a rejected push (the target
branch is reset to where it was). The original branch is always checked out again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rollout.util.errors import RolloutError

if TYPE_CHECKING:  # imported where a repository is opened: most commands never open one
    import git


class PromotionError(RolloutError):
    """A promotion that was refused or undone; the repository is as it was."""


_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")


def _clean(text: str) -> str:
    """Git's messages, without credentials in remote URLs, on one line."""
    return " ".join(_CREDENTIALS.sub(r"\1***@", text).split())[:400]


@dataclass
class Promotion:
    source: str
    target: str
    commits: list[tuple[str, str]] = field(default_factory=list)  # (sha, summary), newest first
    source_sha: str = ""
    merged_sha: str | None = None
    pushed: bool = False


def open_repo(path: Path) -> git.Repo:
    import git

    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise PromotionError(f"{path}: not a git repository") from exc


def checked_out_commit(repo: git.Repo) -> str | None:
    """The commit checked out in ``repo``; None in a repository with no commit yet."""
    try:
        return repo.head.commit.hexsha
    except ValueError:  # an unborn branch: nothing committed yet
        return None


def plan_promotion(repo: git.Repo, source: str, target: str, remote: str) -> Promotion:
    """What would be promoted; raises :class:`PromotionError` when it cannot be."""
    heads = {h.name for h in repo.heads}
    for name, role in ((source, "source"), (target, "target")):
        if name not in heads:
            raise PromotionError(f"{role} branch {name!r} does not exist in {repo.working_dir}")
    if remote not in {r.name for r in repo.remotes}:
        raise PromotionError(f"remote {remote!r} is not configured in {repo.working_dir}")
    commits = [(c.hexsha, str(c.summary)) for c in repo.iter_commits(f"{target}..{source}")]
    return Promotion(source, target, commits, repo.heads[source].commit.hexsha)


def promote(path: Path, source: str, target: str, remote: str = "origin", dry_run: bool = False) -> Promotion:
    """Merge ``source`` into ``target`` (a merge commit) and push ``target`` to ``remote``."""
    import git

    repo = open_repo(path)
    if repo.is_dirty(untracked_files=True):
        dirty = [d.a_path for d in repo.index.diff(None) if d.a_path] + repo.untracked_files
        staged = [d.a_path for d in repo.index.diff("HEAD") if d.a_path] if repo.head.is_valid() else []
        names = sorted(set(dirty + staged))
        raise PromotionError(
            f"{repo.working_dir}: the working tree is dirty ({len(names)} file(s): "
            f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}); commit or stash first"
        )
    plan = plan_promotion(repo, source, target, remote)
    if dry_run or not plan.commits:
        return plan
    original = repo.head.ref.name if not repo.head.is_detached else repo.head.commit.hexsha
    before = repo.heads[target].commit.hexsha
    try:
        repo.git.checkout(target)
        try:
            repo.git.merge(source, "--no-ff", "-m", f"Promote {source} into {target} (rollout)")
        except git.GitCommandError as exc:
            conflicts = repo.git.diff("--name-only", "--diff-filter=U").split()
            try:
                repo.git.merge("--abort")
            except git.GitCommandError:
                repo.git.reset("--hard", before)
            detail = f"conflicts in {', '.join(conflicts)}" if conflicts else _clean(exc.stderr or str(exc))
            raise PromotionError(
                f"merging {source} into {target} failed ({detail}); merge aborted, nothing changed"
            ) from exc
        plan.merged_sha = repo.head.commit.hexsha
        try:
            repo.git.push(remote, f"{target}:{target}")
        except git.GitCommandError as exc:
            repo.git.reset("--hard", before)
            plan.merged_sha = None
            raise PromotionError(
                f"pushing {target} to {remote} was rejected ({_clean(exc.stderr or str(exc))}); "
                f"{target} reset to {before[:12]}, nothing changed"
            ) from exc
        plan.pushed = True
        return plan
    finally:
        repo.git.checkout(original)
