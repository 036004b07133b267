"""Gate evidence per commit: what a promote step with ``require_evidence_from`` asks for, and what
``rollout status`` shows before anyone asks. The commits are read in the project's ``--repo``, the
same repository ``gate`` and ``advance`` take theirs from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rollout.engine.state import StateRecords
from rollout.playbook.model import Playbook, PromoteStep, step_label

if TYPE_CHECKING:  # gitpython is imported where a repository is opened: most commands never open one
    import git

#: the audit entries that show a commit passed an environment's gates
EVIDENCE_ACTIONS = ("gate_passed", "phase_completed")


def has_evidence(state: StateRecords, environment: str, sha: str) -> dict[str, Any] | None:
    """The newest audit entry that shows ``sha`` passed ``environment``'s gates, if there is one."""
    for entry in reversed(state.audit_log(environment, limit=100_000)):
        if entry["action"] in EVIDENCE_ACTIONS and entry["detail"].get("commit") == sha:
            return entry
    return None


def promotion_evidence(
    playbook: Playbook, state: StateRecords, repo: git.Repo, env_name: str | None = None
) -> list[dict[str, Any]]:
    """For each promote step that requires evidence (of ``env_name``'s phase, or every phase): the
    commit it would promote now (its source branch in ``repo``) and the evidence that commit has
    (``None``: none yet), or ``problem`` when the branch does not exist."""
    rows = []
    for phase in playbook.phases:
        if env_name is not None and phase.environment != env_name:
            continue
        for index, step in enumerate(phase.steps):
            if not isinstance(step, PromoteStep) or not step.require_evidence_from:
                continue
            row: dict[str, Any] = {
                "environment": phase.environment,
                "step": step_label(step, index),
                "source": step.source,
                "target": step.target,
                "evidence_from": step.require_evidence_from,
                "commit": None,
                "evidence": None,
                "problem": None,
            }
            if step.source not in {h.name for h in repo.heads}:
                row["problem"] = f"branch {step.source!r} does not exist in {repo.working_dir}"
            else:
                row["commit"] = repo.heads[step.source].commit.hexsha
                proof = has_evidence(state, step.require_evidence_from, row["commit"])
                row["evidence"] = None if proof is None else {"action": proof["action"], "ts": proof["ts"]}
            rows.append(row)
    return rows
