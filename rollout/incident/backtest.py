"""A backtest as a page in the incident report's style: per run, the evaluations as recorded and as
the candidate would have judged them (the same SVG timeline chart), the table, and the summary."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from rollout.incident.chart import timeline_svg

TEMPLATE = Path(__file__).parent / "templates" / "backtest.html.j2"


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z" if ts else "-"


def _charts(run: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the recorded evaluations' chart, the replayed ones'), each a self-contained SVG."""
    rows = [row for step in run["steps"] for row in step["evaluations"]]
    replayed = [
        {"ts": r["ts"], "percent": r["percent"], "verdict": r["replayed"], "metrics": r["metrics"]} for r in rows
    ]
    names = list(dict.fromkeys(m["metric"] for r in rows for m in r["metrics"] if m.get("metric") != "sample_ratio"))
    recorded = [
        {"ts": r["ts"], "percent": r["percent"], "verdict": r["recorded"], "metrics": r.get("recorded_values", [])}
        for r in rows
        if r["recorded"] is not None
    ]
    return (
        timeline_svg(recorded, names, run["recorded_off_at"]) if recorded else None,
        timeline_svg(replayed, names, run["replayed_off_at"]),
    )


def backtest_html(env: str, candidate: str, result: dict[str, Any]) -> str:
    """The page for ``result`` (as ``rollout backtest --json`` prints it)."""
    runs = []
    for run in result["runs"]:
        recorded_chart, replayed_chart = _charts(run)
        runs.append(
            {
                **run,
                "started_shown": _when(run["started"]),
                "recorded_chart": recorded_chart,
                "replayed_chart": replayed_chart,
                "rows": [{**row, "when": _when(row["ts"])} for step in run["steps"] for row in step["evaluations"]],
            }
        )
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = environment.from_string(TEMPLATE.read_text())
    return template.render(
        env=env, candidate=candidate, summary=result["summary"], runs=runs, exit_code=result["exit_code"]
    )
