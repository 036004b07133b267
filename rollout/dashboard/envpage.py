"""An environment's page as JSON: its steps as a timeline, its current run's evaluations (each metric's
value at each, the chart's points), its verdicts and its audit in words, read from the state store
when the page loads; the event stream adds to it from there (:mod:`rollout.dashboard.events`)."""

from __future__ import annotations

import time
from typing import Any

from rollout.dashboard.rows import audit_line, steps_timeline, verdict_line
from rollout.engine.drill import last_drill
from rollout.engine.project import Project
from rollout.engine.waves import wave_view
from rollout.incident.chart import ramp_start
from rollout.playbook.model import Playbook

#: the newest evaluations and audit entries a page loads (an evaluation every 10 s: about 3 hours)
LIMIT = 1000


def environment_page(
    project: Project, playbook: Playbook | None, env: str, limit: int = LIMIT, now: float | None = None
) -> dict[str, Any]:
    """What ``env``'s page shows besides its overview row. ``since`` is when its current run began (the
    phase's last start): the charts and the verdict list cover that run; the audit covers everything.
    ``wave``: for a region of a phase in waves, its wave (:func:`rollout.engine.waves.wave_view`) at ``now``."""
    state = project.state(read_only=True)
    try:
        record = state.get(env)
        audit = state.audit_log(env, limit=limit)
        verdicts = state.verdicts(env, limit=limit)
        control = state.control(env)
        wave = wave_view(playbook, state, env, time.time() if now is None else now)
    finally:
        state.close()
    since, _ = ramp_start(audit)
    phase = playbook.phase_for(env) if playbook is not None else None
    return {
        "since": since,
        "description": phase.description if phase is not None else "",
        "commit": (record.commit_sha or "")[:12],
        "reason": record.reason,
        "steps": steps_timeline(playbook, phase, record) if playbook is not None else [],
        "verdicts": [verdict_line(v) for v in verdicts if v["ts"] >= since],
        "audit": [audit_line(a) for a in audit],
        "promote_pending": control.promote_kind,
        # the last kill-switch drill: each flag-off's slowest replica, every replica's time
        "drill": last_drill(audit),
        "wave": wave,
    }
