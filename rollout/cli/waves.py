"""``rollout advance --phase NAME``: every region of a phase in waves from one command.

Without an agent the regions are driven from this process (:mod:`rollout.engine.fanout`); when the
always-on agents serve every region, each region's run is handed to them (a run request per
region, as ``advance --env`` hands one) and all of them are followed here at once.
"""

from __future__ import annotations

from typing import Any

import click

from rollout.cli.main import AGENT_TAKES_WITHIN_S, _confirm_phase, _emit
from rollout.util.outcomes import ExitCode


def advance_phase(
    project: Any,
    phase_name: str,
    *,
    approve: bool,
    yes: bool,
    override_evidence: str | None,
    override_window: str | None,
    as_json: bool,
) -> None:
    """Drive (or hand to the agents and follow) every region of ``phase_name``; print the outcome."""
    from rollout.console import ConsoleReporter, QuietReporter
    from rollout.engine import fanout
    from rollout.util.clock import SystemClock

    phase = fanout.waved_phase(project, phase_name)
    out = QuietReporter() if as_json else ConsoleReporter(redactor=project.redactor)
    handed = _hand_to_agents(project, phase, approve, yes, override_evidence, out)
    if handed is not None:
        _emit(handed, as_json)
        return

    def confirm(contexts: dict[str, Any]) -> None:
        begun = [r for r, ctx in contexts.items() if ctx.state.get(r).status not in ("completed", "rolled_back")]
        if phase.confirm and not (yes or approve) and begun:
            _confirm_phase(phase.name, ", ".join(begun), 0)

    outcome = fanout.advance_phase(
        project,
        phase,
        SystemClock(),
        out,
        approve=approve,
        override_evidence=override_evidence,
        override_window=override_window,
        before_start=confirm,
    )
    _emit(outcome, as_json, then=outcome.pending)


def plan_phase(project: Any, phase_name: str, as_json: bool) -> None:
    """``advance --phase NAME --dry-run``: each region's plan, as ``rollout plan --env REGION`` shows it."""
    from rollout.cli.main import plan
    from rollout.engine import fanout

    if as_json:
        raise click.UsageError(
            "--dry-run --json plans one environment: run `rollout plan --env REGION --json` per region"
        )
    phase = fanout.waved_phase(project, phase_name)
    for region in phase.environments:
        click.get_current_context().invoke(plan, env_name=region, as_json=False)
    click.echo("dry run: nothing was written")


def _hand_to_agents(project: Any, phase: Any, approve: bool, yes: bool, override: str | None, out: Any) -> Any:
    """When live agents serve the phase's regions, hand each region's run to them and follow them
    all here; returns how the phase ended, or None to drive it in this process (no agent serves
    any region). Agents serving some regions but not others is refused: one driver per phase."""
    from rollout.engine import fanout, handoff, runner
    from rollout.engine.follow import Follower
    from rollout.engine.state import actor
    from rollout.engine.waves import WaveNotYet
    from rollout.util.clock import SystemClock
    from rollout.util.errors import StateError

    clock = SystemClock()
    state = project.state()
    try:
        served = {region: handoff.serving(state, region, clock.time()) for region in phase.environments}
        if not any(served.values()):
            return None
        unserved = [region for region, agents in served.items() if not agents]
        if unserved:
            raise StateError(
                f"the agents serve {', '.join(r for r in served if r not in unserved)} of phase {phase.name} but not "
                f"{', '.join(unserved)}: serve every region with the agents, or run each with `rollout advance --env`"
            )
        outcomes: dict[str, Any] = {}
        with fanout.region_contexts(project, phase, clock, out, state, read_only=True) as contexts:
            for region, ctx in contexts.items():
                done = runner.finished(ctx)
                if done is not None:
                    outcomes[region] = done
                    continue
                try:
                    runner.check_order(ctx)
                except WaveNotYet:
                    pass  # the agent waits for the wave, as this terminal would
            left = [r for r in phase.environments if r not in outcomes]
            if left and phase.confirm and not (yes or approve):
                _confirm_phase(phase.name, ", ".join(left), 0)
        if not left:  # every region has ended already: nothing to hand over
            return fanout.summary(phase, phase.environments, outcomes)
        requests = {}
        options = {"approve": approve, "override_evidence": override}
        for region in left:
            since = state.last_ids(region)
            request = handoff.request_run(state, region, options, actor(), clock.time())
            requests[region] = (request, Follower(state, phase, region, fanout.RegionReporter(out, region), since))
        names = ", ".join(sorted({a.id for agents in served.values() for a in agents}))
        out.line(
            f"phase {phase.name} ({', '.join(left)}) is served by the agent {names}: each region's run is handed to it "
            "and followed here (Ctrl-C stops following, not the runs)",
            "bold",
        )
        try:
            followed = fanout.follow_regions(state, phase, requests, clock, AGENT_TAKES_WITHIN_S)
        except KeyboardInterrupt:
            from rollout.engine.outcome import RunOutcome

            return RunOutcome(
                "following_stopped",
                ExitCode.INTERRUPTED,
                f"stopped following; the runs of {', '.join(left)} go on in the agents. `rollout status` shows them; "
                "`rollout rollback --env REGION --reason ...` stops one",
                ", ".join(left),
                phase.name,
            )
        return fanout.summary(phase, phase.environments, {**outcomes, **followed})
    finally:
        state.close()
