"""Render an incident report from the state (audit log, verdicts), the service and the env file.

Everything in the report passes through the environment's redactor: no token, no full phone number.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from rollout.flags import FlagBackend
from rollout.gates import fmt
from rollout.incident.chart import ramp_start, timeline_svg
from rollout.incident.words import audit_words
from rollout.playbook.environments import Resolved
from rollout.util.errors import ConfigError, described

if TYPE_CHECKING:  # the record it reads; the engine hands it over
    from rollout.engine.state import StateRecords

DEFAULT_TEMPLATE = Path(__file__).parent / "templates" / "incident.md.j2"
HTML_TEMPLATE = Path(__file__).parent / "templates" / "incident.html.j2"
SAMPLE_WINDOW_S = 3600


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if ts else "-"


def _flag_config(
    resolved: Resolved, flags: FlagBackend, flag: bool | None, percent: int | None, read_flags: bool
) -> tuple[dict[str, str], str | None]:
    """The configuration in force as the backend holds it, or, when it is not read (``read_flags``
    False) or cannot be, the flag and percentage as rollout recorded them, with a note saying which."""
    if read_flags:
        try:
            return resolved.shown(flags.read()), None
        except Exception as exc:  # noqa: BLE001 - the report never needs the flag service
            shown = described(exc)
            note = f"the flag backend could not be read ({shown}); the flag below is as rollout recorded it"
    else:
        note = "the flag below is as rollout recorded it (the flag backend is not read again while turning it off)"
    recorded = {} if flag is None else {flags.flag_variable: "true" if flag else "false"}
    if percent is not None:
        recorded[flags.percent_variable] = str(percent)
    return resolved.shown(recorded), note


def collect(
    state: StateRecords,
    resolved: Resolved,
    flags: FlagBackend,
    target: Any,
    clock_now: float,
    read_flags: bool = True,
    wave: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the template shows, already redacted and masked; what the ``target`` says of its
    last hour (its ``incident_facts`` and ``report_fragment``, when it has them) fills the samples of
    the errors and the customer impact. The flag backend is read for the
    configuration only with ``read_flags``, and a backend that cannot be read leaves the record's flag
    (said in ``config_note``): the report never depends on the flag service. ``wave``: the
    environment's wave when the flag-off did not record one (a person's rollback of a region of a
    phase in waves)."""
    env = resolved.env.name
    current = state.get(env)
    audit = state.audit_log(env, limit=5000)
    verdicts = state.verdicts(env, limit=5000)
    offs = [a for a in audit if a["action"] == "flag_off"]
    off = offs[-1] if offs else None
    # a flag-off that failed after the last one that went through (or with none before it)
    failures = [a for a in audit if a["action"] == "flag_off_failed" and (off is None or a["ts"] >= off["ts"])]
    config, config_note = _flag_config(resolved, flags, current.flag, current.percent, read_flags)
    confirmed = [a for a in audit if a["action"] == "flag_off_confirmed" and off and a["ts"] >= off["ts"]]
    unconfirmed = [a for a in audit if a["action"] == "flag_off_unconfirmed" and off and a["ts"] >= off["ts"]]
    breach = ((off or {}).get("detail") or {}).get("verdict") or {}
    metrics = breach.get("metrics") or []
    percent = (off or {}).get("detail", {}).get("previous_percent") if off else current.percent
    timeline = [
        {
            "when": _when(a["ts"]),
            "what": a["action"],
            "who": a["actor"],
            "detail": audit_words(a["action"], a["detail"]),
        }
        for a in audit
    ]
    timeline += [
        {
            "when": _when(v["ts"]),
            "what": f"verdict {v['verdict']}",
            "who": "rollout",
            "detail": f"{v['step']}"
            + (f" at {v['percent']}%" if v["percent"] is not None else "")
            + f": {v['summary']}",
        }
        for v in verdicts
        if v["verdict"] != "pass" or v is verdicts[-1]
    ]
    timeline.sort(key=lambda e: e["when"])
    # the last attempt: a flag-off that failed after the last one that went through, else that one
    attempt = failures[-1] if failures else off
    automatic = bool(attempt and attempt["detail"].get("automatic"))
    # production, or a region of the production phase in waves
    region_of = (breach.get("wave") or wave or {}).get("phase")
    where = "production" if env == "production" else f"production ({env})" if region_of == "production" else None
    data: dict[str, Any] = {
        "env": env,
        "status": current.status,
        "phase": current.phase,
        "commit": current.commit_sha,
        "off_at": _when(off["ts"]) if off and not failures else None,
        "failed_at": _when(failures[-1]["ts"]) if failures else None,
        "off_actor": attempt["actor"] if attempt else None,
        "automatic": automatic,
        "reason": (attempt or {}).get("detail", {}).get("reason") or current.reason,
        "step": next((a["detail"].get("step") for a in reversed(audit) if a["action"] == "step_started"), None),
        "percent": percent,
        "severity": (
            f"SEV-2: {where} customers affected"
            if where and automatic
            else f"SEV-3: {where}, stopped by a person"
            if where
            else f"SEV-4: {env}, no customers affected"
        ),
        "confirmed_ms": confirmed[0]["detail"].get("after_ms") if confirmed else None,
        "unconfirmed": unconfirmed[0]["detail"].get("problem") if unconfirmed and not confirmed else None,
        "write_failed": failures[-1]["detail"].get("problem") if failures else None,
        "breach_metrics": [
            {
                **m,
                "value_shown": fmt(m["metric"], m["value"], m.get("unit")),
                "target_shown": fmt(m["metric"], m["target"], m.get("unit")),
                "alert_shown": fmt(m["metric"], m["alert"], m.get("unit")),
            }
            for m in metrics
        ],
        "timeline": timeline,
        "written_at": _when(clock_now),
        "env_file": flags.describe(),
        "config": config,
        "config_note": config_note,
        "flag_variable": flags.flag_variable,
        "feature": f"the feature behind {flags.flag_variable}",
        "flag_note": None,
        "sample_window": SAMPLE_WINDOW_S,
        "service_error": None,
        "target_section": None,
        "impact": None,
        "actions": [],
    }
    facts = getattr(target, "incident_facts", None)
    if facts is not None:
        data.update(facts(SAMPLE_WINDOW_S, flags.flag_variable))
        fragment = render(data, target.report_fragment)
        data["target_section"] = fragment[:-1] if fragment.endswith("\n") else fragment
    for a in audit:
        if a["action"] == "flag_off":
            data["actions"].append(
                f"{_when(a['ts'])}: flag turned off "
                f"{'automatically' if a['detail'].get('automatic') else 'by ' + a['actor']}"
            )
        elif a["action"] in ("flag_off_confirmed", "resumed_after_rollback", "approved"):
            data["actions"].append(
                f"{_when(a['ts'])}: {a['action'].replace('_', ' ')} ({audit_words(a['action'], a['detail'])})"
            )
    policy_done = next(
        (
            a["detail"]
            for a in reversed(audit)
            if a["action"] == "wave_failure" and (off is None or a["ts"] >= off["ts"])
        ),
        None,
    )
    data["wave_lines"] = wave_lines(env, breach.get("wave") or wave, policy_done)
    data = resolved.redactor().value(data)
    # numbers and metric names only: drawn after redaction, so nothing in it needs masking
    failing = [m["metric"] for m in metrics if m.get("verdict") == "fail"]
    until = off["ts"] if off else clock_now
    # the whole ramp that ended in this flag-off, from its first percentage on (without a ramp: the phase)
    since, first_ramp = ramp_start(audit, until)
    shown = [v for v in verdicts if (first_ramp or since) <= v["ts"] <= until + 1]
    data["chart_svg"] = timeline_svg(shown[-2000:], failing, off["ts"] if off else None)
    data["chart_file"] = None
    return data


def _share(value: Any) -> str:
    return f"{float(value) * 100:.3g}%"


def wave_lines(env: str, wave: dict[str, Any] | None, done: dict[str, Any] | None) -> list[str]:
    """A phase in waves, said in the report: which wave and regions, which region failed, what the
    policy did and the exposure in force against the budget (empty for a phase in one environment).
    ``wave`` is what the flag-off recorded of its wave; ``done``, the failing region's ``wave_failure``."""
    if not wave and not done:
        return []
    lines = []
    policy = (wave or done or {}).get("policy")
    if wave:
        regions = ", ".join(wave.get("regions") or [])
        lines.append(
            f"{env} is in wave {wave.get('wave')} of {wave.get('waves')} of phase {wave.get('phase')} "
            f"(the regions of this wave: {regions}); on_failure: {policy}."
        )
        if wave.get("caused_by"):
            lines.append(
                f"This region did not fail: {wave['caused_by']} did, and on_failure all_regions turns every "
                "region's flag off (the failing region's first)."
            )
        elif policy == "all_regions":
            lines.append(f"The breach was here, in {env}: every other region's flag goes off after this one's.")
        else:
            lines.append(f"The breach was here, in {env}: only this region's flag goes off; the waves after it wait.")
    exposure = (done or {}).get("exposure", (wave or {}).get("exposure"))
    budget = (done or {}).get("max_exposure", (wave or {}).get("max_exposure"))
    if exposure is not None:
        lines.append(
            f"Exposure in force when it failed: {_share(exposure)} of the phase's customers across its regions"
            + (f", against a max_exposure of {_share(budget)}." if budget is not None else " (no max_exposure).")
        )
    if done:
        lines.append(
            f"What the policy did ({done.get('policy')}): turned off {', '.join(done.get('turned_off') or [])}"
            + (f"; problems: {'; '.join(done['problems'])}" if done.get("problems") else "")
            + "."
        )
    return lines


def report_name(env: str, now: float) -> str:
    """``ENV-TIMESTAMP``: the stem of a report and of its chart."""
    return f"{env}-{datetime.fromtimestamp(now, UTC).strftime('%Y%m%dT%H%M%S%fZ')}"


def render(data: dict[str, Any], template: Path | None = None) -> str:
    """Render ``data`` with ``template`` (default: the Markdown template shipped with rollout)."""
    path = Path(template) if template else DEFAULT_TEMPLATE
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the template ({exc.__class__.__name__})") from exc
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=path.suffix == ".j2" and path.stem.endswith(".html"),
    )
    try:
        return env.from_string(source).render(**data)
    except jinja2.TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise ConfigError(f"{path}{f':{line}' if line else ''}: template error: {exc.message}") from exc


def write_report(folder: Path, env: str, data: dict[str, Any], now: float, template: Path | None = None) -> Path:
    """Write the report to ``folder/ENV-TIMESTAMP.md`` (and its chart beside it as ``.svg``),
    each atomically; return the report's path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{report_name(env, now)}.md"
    if data.get("chart_svg"):
        chart = path.with_suffix(".svg")
        _atomic(chart, data["chart_svg"])
        data = {**data, "chart_file": chart.name}
    _atomic(path, render(data, template))
    return path.resolve()


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
