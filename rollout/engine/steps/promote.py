"""The ``promote`` step: merge a branch into the next and push, with the gate evidence it requires."""

from __future__ import annotations

from rollout.engine.context import RunContext
from rollout.engine.evidence import has_evidence
from rollout.engine.steps.base import DONE, StepResult
from rollout.playbook.model import Playbook, PromoteStep
from rollout.playbook.plugins import StepKind
from rollout.promote import open_repo, plan_promotion, promote
from rollout.util.errors import StateError


def run(ctx: RunContext, step: PromoteStep, label: str) -> StepResult:

    repo = open_repo(ctx.repo)
    plan = plan_promotion(repo, step.source, step.target, step.remote)
    for sha, summary in plan.commits[:20]:
        ctx.out.line(f"  {sha[:10]} {summary}")
    if step.require_evidence_from and plan.commits:
        proof = has_evidence(ctx.state, step.require_evidence_from, plan.source_sha)
        if proof is None:
            if not ctx.override_evidence:
                raise StateError(
                    f"{label}: commit {plan.source_sha[:12]} of {step.source} has not passed the "
                    f"{step.require_evidence_from} gates; run `rollout gate --env {step.require_evidence_from}` "
                    f"at that commit, or pass --override-evidence REASON"
                )
            ctx.state.audit(
                ctx.env_name,
                "evidence_overridden",
                ctx.clock.time(),
                step=label,
                commit=plan.source_sha,
                reason=ctx.override_evidence,
            )
            ctx.out.line(
                f"  no {step.require_evidence_from} evidence for {plan.source_sha[:12]}; overridden: "
                f"{ctx.override_evidence}",
                "yellow",
            )
        else:
            ctx.out.line(
                f"  evidence: {step.require_evidence_from} {proof['action'].replace('_', ' ')} at "
                f"{plan.source_sha[:12]}"
            )
    result = promote(ctx.repo, step.source, step.target, step.remote)
    sha = result.merged_sha or repo.heads[step.target].commit.hexsha
    now = ctx.clock.time()
    ctx.commit = sha
    ctx.state.update(ctx.env_name, now, commit_sha=sha)
    ctx.state.audit(
        ctx.env_name,
        "promote",
        now,
        step=label,
        source=step.source,
        target=step.target,
        remote=step.remote,
        commits=len(result.commits),
        source_commit=result.source_sha,
        commit=sha,
        pushed=result.pushed,
    )
    what = f"{len(result.commits)} commit(s) merged and pushed" if result.pushed else "nothing new to promote"
    return StepResult(DONE, f"{step.source} -> {step.target}: {what}; {step.target} at {sha[:12]}")


def describe(step: PromoteStep, playbook: Playbook | None = None) -> str:
    return f"merge {step.source} into {step.target} and push to {step.remote}"


class Kind(StepKind):
    """The ``promote`` step kind."""

    name = "promote"
    config = PromoteStep
    run = staticmethod(run)
    describe = staticmethod(describe)
