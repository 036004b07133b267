"""The incident timeline as a picture: server-rendered SVG, no script, no library, no network.

Two panels sharing the time axis: the cohort's percentage as it was ramped, and each failing
metric's value at every evaluation against its alert (dashed red) and target (dotted green) lines.
The flag-off is a red vertical line across both. SVG was chosen over a vendored chart library: it
is a few dozen lines, it embeds in Markdown (as a file beside the report) and in HTML (inline),
and it renders the same in every viewer.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from rollout.gates import fmt

WIDTH, PANEL, GAP, LEFT, RIGHT, TOP = 760, 120, 36, 70, 20, 24


def ramp_start(audit: list[dict[str, Any]], until: float = math.inf) -> tuple[float, float | None]:
    """(when the phase last started or resumed, when its ramp wrote its first percentage after
    that, or None), counting only audit entries up to ``until``: where a ramp's chart begins."""
    since = max(
        (a["ts"] for a in audit if a["action"] in ("phase_started", "resumed_after_rollback") and a["ts"] <= until),
        default=0.0,
    )
    first = min((a["ts"] for a in audit if a["action"] == "ramp" and since <= a["ts"] <= until), default=None)
    return since, first


def _x(ts: float, start: float, span: float) -> float:
    return LEFT + (ts - start) / span * (WIDTH - LEFT - RIGHT)


def timeline_svg(verdicts: list[dict[str, Any]], metrics: list[str], off_at: float | None) -> str | None:
    """An SVG of ``verdicts`` (as the state stores them) for ``metrics``; None when there is nothing to draw."""
    points = [v for v in verdicts if v.get("ts") is not None]
    if len(points) < 2:
        return None
    start = points[0]["ts"]
    end = max(points[-1]["ts"], off_at or 0.0)
    span = max(end - start, 1e-6)
    panels = [("percent", None)] + [(m, m) for m in metrics]
    height = TOP + len(panels) * (PANEL + GAP) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="14" font-size="13" font-weight="bold">Ramp timeline '
        f"({(end - start):.1f} s, {len(points)} evaluations)</text>",
    ]
    for index, (_title, metric) in enumerate(panels):
        top = TOP + index * (PANEL + GAP) + 10
        bottom = top + PANEL
        parts.append(
            f'<rect x="{LEFT}" y="{top}" width="{WIDTH - LEFT - RIGHT}" height="{PANEL}" fill="#fafafa" stroke="#ccc"/>'
        )
        if metric is None:
            series = [(v["ts"], float(v["percent"] or 0)) for v in points]
            low, high, unit, lines = 0.0, 100.0, "%", []
            label = "cohort %"
        else:
            found = [(v["ts"], m) for v in points for m in v.get("metrics") or [] if m.get("metric") == metric]
            series = [(ts, float(m["value"])) for ts, m in found if m.get("value") is not None]
            last = found[-1][1] if found else {}
            unit = last.get("unit") or ""
            lines = (
                [(float(last["alert"]), "#d62728", "6,3", "alert"), (float(last["target"]), "#2ca02c", "2,3", "target")]
                if last
                else []
            )
            values = [v for _, v in series] + [line[0] for line in lines]
            low, high = (min(values), max(values)) if values else (0.0, 1.0)
            if unit == "rate":
                low, high = 0.0, max(high, 0.01)
            label = metric
        high = high if high > low else low + 1.0

        def y(value: float, top: float = top, low: float = low, high: float = high) -> float:
            return top + PANEL - (value - low) / (high - low) * PANEL

        parts.append(f'<text x="4" y="{top + 12}" font-weight="bold">{escape(label)}</text>')
        if metric is not None and found:
            parts.append(
                f'<text x="4" y="{top + 26}" fill="#555">{int(found[-1][1].get("samples") or 0)} samples</text>'
            )
        for value in (low, high):
            shown = f"{value:g}%" if metric is None else fmt(metric, value, unit)
            parts.append(
                f'<text x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end" fill="#555">{escape(shown)}</text>'
            )
        for value, colour, dash, name in lines:
            parts.append(
                f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                f'stroke="{colour}" stroke-dasharray="{dash}"/>'
                f'<text x="{WIDTH - RIGHT - 2}" y="{y(value) - 3:.1f}" text-anchor="end" fill="{colour}">'
                f"{name} {escape(fmt(metric or '', value, unit))}</text>"
            )
        if series:
            path = " ".join(
                f"{'M' if i == 0 else 'L'}{_x(ts, start, span):.1f},{y(v):.1f}" for i, (ts, v) in enumerate(series)
            )
            colour = "#1f77b4" if metric is None else "#9467bd"
            parts.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
            # every evaluation is a dot on its line (thinned past 300 so the picture stays small)
            step = max(1, len(series) // 300)
            for ts, v in series[::step] + series[-1:]:
                parts.append(f'<circle cx="{_x(ts, start, span):.1f}" cy="{y(v):.1f}" r="2" fill="{colour}"/>')
        for verdict in points:
            if verdict.get("verdict") == "fail":
                parts.append(
                    f'<circle cx="{_x(verdict["ts"], start, span):.1f}" cy="{bottom - 4}" r="3" fill="#d62728"/>'
                )
        if off_at is not None:
            x = _x(off_at, start, span)
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="#d62728" stroke-width="2"/>'
            )
            if index == 0:
                parts.append(f'<text x="{x - 4:.1f}" y="{top + 12}" text-anchor="end" fill="#d62728">flag off</text>')
        parts.append(
            f'<text x="{LEFT}" y="{bottom + 14}" fill="#555">+0 s</text>'
            f'<text x="{WIDTH - RIGHT}" y="{bottom + 14}" text-anchor="end" fill="#555">'
            f"+{end - start:.1f} s</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
