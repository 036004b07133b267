"""The incident timeline as a picture: server-rendered SVG, no script, no library, no network.

Two panels sharing the time axis: the cohort's percentage as it was ramped, and each failing
metric's value at every evaluation against its alert (dashed red) and target (dotted green) lines.
An evaluation without data breaks the line (a metric with none at all says "no data"), and the two
thresholds' labels are kept apart. The flag-off is a red vertical line across both. SVG was chosen over a vendored chart library: it
is a few dozen lines, it embeds in Markdown (as a file beside the report) and in HTML (inline),
and it renders the same in every viewer.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from rollout.gates import fmt

WIDTH, PANEL, GAP, LEFT, RIGHT, TOP = 760, 120, 42, 70, 20, 30


def ramp_start(audit: list[dict[str, Any]], until: float = math.inf) -> tuple[float, float | None]:
    """(when the phase last started or resumed, when its ramp wrote its first percentage after
    that, or None), counting only audit entries up to ``until``: where a ramp's chart begins."""
    since = max(
        (a["ts"] for a in audit if a["action"] in ("phase_started", "resumed_after_rollback") and a["ts"] <= until),
        default=0.0,
    )
    first = min((a["ts"] for a in audit if a["action"] == "ramp" and since <= a["ts"] <= until), default=None)
    return since, first


def _apart(ys: list[float], top: float, bottom: float, gap: float = 13.0) -> list[float]:
    """Baselines for labels drawn just above lines at ``ys``, moved apart so no two overlap, within the panel."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed: dict[int, float] = {}
    last = top + 10.0 - gap
    for i in order:
        last = max(ys[i] - 3, last + gap, top + 10.0)
        placed[i] = last
    overflow = max(0.0, last - (bottom - 2))
    return [placed[i] - overflow for i in range(len(ys))]


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
        series: list[tuple[float, float | None]]
        if metric is None:
            series = [(v["ts"], float(v["percent"] or 0)) for v in points]
            low, high, unit, lines = 0.0, 100.0, "%", []
            label = "cohort %"
        else:
            found = [(v["ts"], m) for v in points for m in v.get("metrics") or [] if m.get("metric") == metric]
            series = [(ts, None if m.get("value") is None else float(m["value"])) for ts, m in found]
            last = found[-1][1] if found else {}
            unit = last.get("unit") or ""
            lines = (
                [(float(last["alert"]), "#d62728", "6,3", "alert"), (float(last["target"]), "#2ca02c", "2,3", "target")]
                if last
                else []
            )
            values = [v for _, v in series if v is not None] + [line[0] for line in lines]
            low, high = (min(values), max(values)) if values else (0.0, 1.0)
            if unit == "rate":
                low, high = 0.0, max(high, 0.01)
            label = metric
        high = high if high > low else low + 1.0

        def y(value: float, top: float = top, low: float = low, high: float = high) -> float:
            return top + PANEL - (value - low) / (high - low) * PANEL

        # the panel's name and samples above it, clear of the axis values beside it
        parts.append(f'<text x="{LEFT}" y="{top - 6}" font-weight="bold">{escape(label)}</text>')
        if metric is not None and found:
            parts.append(
                f'<text x="{WIDTH - RIGHT}" y="{top - 6}" text-anchor="end" fill="#555">'
                f"{int(found[-1][1].get('samples') or 0)} samples</text>"
            )
        measured = [(ts, v) for ts, v in series if v is not None]
        if metric is not None and not measured:
            parts.append(
                f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.1f}" y="{top + PANEL / 2 + 4:.1f}" text-anchor="middle" '
                f'fill="#555">no data ({int(found[-1][1].get("samples") or 0) if found else 0} samples)</text>'
            )
        else:
            for value in (low, high):
                shown = f"{value:g}%" if metric is None else fmt(metric, value, unit)
                parts.append(
                    f'<text x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end" fill="#555">{escape(shown)}</text>'
                )
        for (value, colour, dash, name), at in zip(
            lines, _apart([y(line[0]) for line in lines], top, bottom), strict=True
        ):
            parts.append(
                f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                f'stroke="{colour}" stroke-dasharray="{dash}"/>'
                f'<text x="{WIDTH - RIGHT - 2}" y="{at:.1f}" text-anchor="end" fill="{colour}">'
                f"{name} {escape(fmt(metric or '', value, unit))}</text>"
            )
        if measured:
            colour = "#1f77b4" if metric is None else "#9467bd"
            path, pen = [], "M"
            for ts, v in series:  # an evaluation without data breaks the line: a gap, never a value
                if v is None:
                    pen = "M"
                    continue
                path.append(f"{pen}{_x(ts, start, span):.1f},{y(v):.1f}")
                pen = "L"
            parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="2"/>')
            # every evaluation is a dot on its line (thinned past 300 so the picture stays small)
            step = max(1, len(measured) // 300)
            for ts, v in measured[::step] + measured[-1:]:
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
