"""The tool's own metrics (``GET /metrics`` on ``rollout dashboard``), in Prometheus' text format.

Rendered from the state store at each scrape, so they hold whichever process ran the steps: each
environment's status, phase, step and flag; each metric's last value beside its target and alert
(Flagger exports the value; its users asked for the threshold too); verdicts by verdict, flag-offs
by cause (``analysis`` or ``operator``: Argo Rollouts' "aborted by analysis"), failed flag-offs, and
the evaluations' durations. A dashboard serving several projects adds a ``project`` label to every
series (one project: the series are as they always were).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from rollout.engine.flagview import flag_view
from rollout.engine.project import Project
from rollout.engine.state import AWAITING_APPROVAL, COMPLETED, HELD, IDLE, INTERRUPTED, ROLLED_BACK, RUNNING
from rollout.util.errors import RolloutError

#: every status an environment can have, each a series (1 for the current one): a panel can count them
STATUSES = (IDLE, RUNNING, HELD, AWAITING_APPROVAL, ROLLED_BACK, COMPLETED, "completed, flag off", INTERRUPTED)


class _StateCollector(Collector):
    def __init__(self, projects: Mapping[str, Project]) -> None:
        self.projects = projects
        #: the label naming the project, only when there are several
        self.extra = ["project"] if len(projects) > 1 else []

    def collect(self) -> Iterator[Metric]:
        extra = self.extra
        status = GaugeMetricFamily(
            "rollout_environment_status", "1 for the environment's status", labels=[*extra, "environment", "status"]
        )
        step = GaugeMetricFamily(
            "rollout_environment_step",
            "the step running or next (1-based) in the phase",
            labels=[*extra, "environment", "phase"],
        )
        paused = GaugeMetricFamily(
            "rollout_environment_paused", "1 while an operator holds the ramp", labels=[*extra, "environment"]
        )
        flag = GaugeMetricFamily(
            "rollout_flag_enabled", "the flag as the service reports it (1 on, 0 off)", labels=[*extra, "environment"]
        )
        percent = GaugeMetricFamily(
            "rollout_flag_percent", "the rollout percentage in force", labels=[*extra, "environment"]
        )
        labels = [*extra, "environment", "metric", "role", "provider"]
        value = GaugeMetricFamily("rollout_metric_value", "the metric's value at the last evaluation", labels=labels)
        target = GaugeMetricFamily("rollout_metric_target", "the metric's target", labels=labels)
        alert = GaugeMetricFamily("rollout_metric_alert", "the metric's alert threshold", labels=labels)
        samples = GaugeMetricFamily("rollout_metric_samples", "samples behind the last value", labels=labels)
        verdict = GaugeMetricFamily(
            "rollout_metric_verdict", "1 for the metric's last verdict", labels=[*labels, "verdict"]
        )
        verdicts = CounterMetricFamily(
            "rollout_verdicts", "evaluations recorded, by verdict", labels=[*extra, "environment", "verdict"]
        )
        offs = CounterMetricFamily("rollout_flag_offs", "flag-offs, by cause", labels=[*extra, "environment", "cause"])
        failed = CounterMetricFamily(
            "rollout_flag_off_failures", "flag-offs whose write failed", labels=[*extra, "environment"]
        )
        durations = CounterMetricFamily(
            "rollout_evaluation_duration_seconds",
            "time spent evaluating gates (reading and judging)",
            labels=[*extra, "environment"],
        )
        evaluations = CounterMetricFamily(
            "rollout_evaluations",
            "timed evaluations (the count beside the duration's sum)",
            labels=[*extra, "environment"],
        )
        for name, project in self.projects.items():
            try:
                playbook = project.playbook()
            except RolloutError:
                playbook = None
            state = project.state(read_only=True)
            try:
                for row in state.all():
                    env = [name, row.name] if extra else [row.name]
                    view = flag_view(project, playbook, state, row)
                    for shown in STATUSES:
                        status.add_metric([*env, shown], 1.0 if view.status == shown else 0.0)
                    step.add_metric([*env, row.phase or ""], float(row.step_index + 1))
                    paused.add_metric(env, 1.0 if state.control(row.name).paused else 0.0)
                    if view.flag is not None:
                        flag.add_metric(env, 1.0 if view.flag else 0.0)
                    if view.percent is not None:
                        percent.add_metric(env, float(view.percent))
                    last = state.verdicts(row.name, limit=1)
                    for m in last[0]["metrics"] if last else []:
                        key = [*env, m["metric"], m.get("role", "guardrail"), m.get("provider", "embedded")]
                        if m.get("value") is not None:
                            value.add_metric(key, float(m["value"]))
                        target.add_metric(key, float(m["target"]))
                        alert.add_metric(key, float(m["alert"]))
                        samples.add_metric(key, float(m["samples"]))
                        verdict.add_metric([*key, m["verdict"]], 1.0)
                    tallies = state.tallies(row.name)
                    for verdict_name in ("pass", "hold", "fail"):
                        verdicts.add_metric([*env, verdict_name], float(tallies["verdicts"].get(verdict_name, 0)))
                    for cause, n in tallies["flag_offs"].items():
                        offs.add_metric([*env, cause], float(n))
                    failed.add_metric(env, float(tallies["flag_off_failures"]))
                    durations.add_metric(env, tallies["evaluation_seconds"])
                    evaluations.add_metric(env, float(tallies["evaluations_timed"]))
            finally:
                state.close()
        yield from (status, step, paused, flag, percent, value, target, alert, samples, verdict)
        yield from (verdicts, offs, failed, durations, evaluations)


def exposition(projects: Project | Mapping[str, Project]) -> bytes:
    """The text a Prometheus scrape of the dashboard gets (``projects``: name -> project, or one project)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StateCollector(projects if isinstance(projects, Mapping) else {"": projects}))
    return generate_latest(registry)
