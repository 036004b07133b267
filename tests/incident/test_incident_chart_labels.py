"""The incident report's chart, read as a person reads it: a metric without data says so and is never
drawn as a value (no flat line at "-0 ms"), a gap in the data breaks the line, and no label is written
over another (the target and alert of a rate sit 6 px apart on a 0-100 % axis)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from rollout.incident.chart import timeline_svg

SVG = "{http://www.w3.org/2000/svg}"


def evaluations() -> list[dict]:
    found = []
    for i in range(8):
        at_100 = i >= 4  # at 100 % there is no control group: the compare metric has no data
        found.append(
            {
                "ts": 1000.0 + i,
                "percent": 100 if at_100 else 50,
                "verdict": "pass",
                "metrics": [
                    {
                        "metric": "success_rate",
                        "value": 1.0,
                        "target": 0.95,
                        "alert": 0.9,
                        "samples": 40,
                        "unit": "rate",
                    },
                    {
                        "metric": "booking_latency_ms",
                        "value": None if at_100 else -0.06,
                        "target": 50.0,
                        "alert": 250.0,
                        "samples": 0 if at_100 else 30,
                        "unit": "latency",
                    },
                    {
                        "metric": "error_rate",
                        "value": None,
                        "target": 0.01,
                        "alert": 0.05,
                        "samples": 0,
                        "unit": "rate",
                    },
                ],
            }
        )
    return found


def boxes(svg: ET.Element) -> list[tuple[str, float, float, float, float]]:
    """Each label's box, its width estimated from DejaVu Sans at 11 px (7 px a character, bold or not)."""
    found = []
    for text in svg.iter(f"{SVG}text"):
        words, size = text.text or "", float(text.get("font-size") or 11)
        width, x, y = len(words) * size * 0.64, float(text.get("x")), float(text.get("y"))
        left = {"end": x - width, "middle": x - width / 2}.get(text.get("text-anchor") or "", x)
        found.append((words, left, y - size * 0.8, left + width, y + size * 0.2))
    return found


def test_no_data_is_said_never_drawn_and_no_label_lies_over_another():
    svg = ET.fromstring(timeline_svg(evaluations(), ["success_rate", "booking_latency_ms", "error_rate"], 1006.5))
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "no data (0 samples)" in texts  # error_rate never had any
    assert not [t for t in texts if t and "-0 " in t]
    # the compare metric's line stops where its data stops; no path for the metric without data
    paths = [p.get("d") for p in svg.iter(f"{SVG}path")]
    assert len(paths) == 3  # the percentage, success_rate, booking_latency_ms (up to where it had data)
    assert paths[2].count("M") == 1 and paths[2].count("L") == 3
    labels = boxes(svg)
    overlapping = [
        (a[0], b[0])
        for i, a in enumerate(labels)
        for b in labels[i + 1 :]
        if min(a[3], b[3]) - max(a[1], b[1]) > 0 and min(a[4], b[4]) - max(a[2], b[2]) > 0
    ]
    assert overlapping == []
