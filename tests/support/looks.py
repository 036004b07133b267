"""What a person sees on a page, measured in the browser: text that overlaps other text, text whose
contrast with what is behind it fails WCAG AA, where the keyboard's focus goes and whether it shows,
and what does not fit the window's width. Each check runs in the page (Playwright's ``evaluate``)
on the boxes and computed styles the browser laid out, and returns what it found wrong."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: every element holding text of its own, with its line boxes clipped by the ancestors that clip it
_TEXT_BOXES = """
(scope) => {
  const root = scope ? document.querySelector(scope) : document.body;
  const found = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT);
  for (let node = walker.currentNode; node; node = walker.nextNode()) {
    if (node.closest("title, script, style, option")) continue;
    if (node.closest("details:not([open])") && !node.closest("summary")) continue; // folded away, not drawn
    const own = [...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(node);
    if (style.visibility === "hidden" || style.display === "none" || node.closest("[hidden]")) continue;
    let clip = { left: -1e9, top: -1e9, right: 1e9, bottom: 1e9 };
    for (let up = node.parentElement; up; up = up.parentElement) {
      const s = getComputedStyle(up);
      if (s.overflowX !== "visible" || s.overflowY !== "visible") {
        const r = up.getBoundingClientRect();
        clip = { left: Math.max(clip.left, r.left), top: Math.max(clip.top, r.top), right: Math.min(clip.right, r.right), bottom: Math.min(clip.bottom, r.bottom) };
      }
    }
    const rects = node instanceof SVGElement ? [node.getBoundingClientRect()] : [...node.getClientRects()];
    rects.forEach((r) => {
      const box = { left: Math.max(r.left, clip.left), top: Math.max(r.top, clip.top), right: Math.min(r.right, clip.right), bottom: Math.min(r.bottom, clip.bottom) };
      if (box.right - box.left > 1 && box.bottom - box.top > 1) found.push({ node, box, text: node.textContent.trim().slice(0, 60) });
    });
  }
  return found;
}
"""

OVERLAPS = """
(scope) => {
  const boxes = (TEXT_BOXES)(scope);
  const wrong = [];
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i], b = boxes[j];
      if (a.node === b.node || a.node.contains(b.node) || b.node.contains(a.node)) continue;
      const w = Math.min(a.box.right, b.box.right) - Math.max(a.box.left, b.box.left);
      const h = Math.min(a.box.bottom, b.box.bottom) - Math.max(a.box.top, b.box.top);
      if (w > 1 && h > 1) wrong.push(`${JSON.stringify(a.text)} overlaps ${JSON.stringify(b.text)} (${w.toFixed(1)} x ${h.toFixed(1)} px)`);
    }
  }
  return { checked: boxes.length, wrong };
}
""".replace("TEXT_BOXES", _TEXT_BOXES)

CONTRAST = """
(scope) => {
  const parse = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null; const p = m[1].split(",").map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3])).concat(1);
  function behind(node) {
    const layers = [];
    for (let up = node; up; up = up.parentElement) {
      const s = getComputedStyle(up);
      if (up instanceof SVGElement && up.tagName !== "svg") continue;
      const bg = parse(s.backgroundColor);
      if (bg && bg[3] > 0) { layers.push(bg); if (bg[3] >= 1) break; }
    }
    let colour = [255, 255, 255, 1];
    layers.reverse().forEach((l) => { colour = over(l, colour); });
    return colour;
  }
  const boxes = (TEXT_BOXES)(scope);
  const wrong = [];
  const seen = new Set();
  boxes.forEach(({ node, text }) => {
    if (seen.has(node)) return;
    seen.add(node);
    const s = getComputedStyle(node);
    let fg, bg;
    if (node instanceof SVGElement) {
      fg = parse(s.fill);
      // a label's halo (its stroke, painted under the glyphs) is what is right behind it
      bg = s.stroke && s.stroke !== "none" && parseFloat(s.strokeWidth) >= 2 ? parse(s.stroke) : behind(node.ownerSVGElement);
    } else {
      fg = parse(s.color);
      bg = behind(node);
    }
    if (!fg || !bg) return;
    fg = over(fg, bg);
    const [l1, l2] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    const size = parseFloat(s.fontSize), bold = parseInt(s.fontWeight, 10) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < needed) wrong.push(`${JSON.stringify(text)}: ${ratio.toFixed(2)} < ${needed} (${s.color || s.fill} on rgb(${bg.slice(0, 3)}))`);
  });
  return { checked: seen.size, wrong };
}
""".replace("TEXT_BOXES", _TEXT_BOXES)

#: the focused element after a Tab: what it is, and whether its focus ring shows
FOCUSED = """
() => {
  const a = document.activeElement;
  if (!a || a === document.body) return null;
  const s = getComputedStyle(a);
  const ring = (s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 2) || (s.boxShadow && s.boxShadow !== "none");
  return { tag: a.tagName.toLowerCase(), action: a.dataset.action || null, text: (a.textContent || a.value || "").trim().slice(0, 40),
           label: a.getAttribute("aria-label") || (a.labels && a.labels[0] ? a.labels[0].firstChild.textContent.trim() : null),
           row: a.closest("tr") ? a.closest("tr").getAttribute("aria-rowindex") : null, ring };
}
"""

#: what sticks out of the window sideways
WIDE = """
(selector) => {
  const width = document.documentElement.clientWidth;
  const wrong = [];
  if (document.documentElement.scrollWidth > width) wrong.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} > ${width}`);
  document.querySelectorAll(selector).forEach((n) => {
    const r = n.getBoundingClientRect();
    if (r.left < 0 || r.right > width) wrong.push(`${n.textContent.trim()} is outside the window (${r.left}..${r.right} of ${width})`);
  });
  return wrong;
}
"""


def looks_right(page: Any, scope: str | None = None) -> list[str]:
    """Overlapping text and failing contrast on ``page`` (within ``scope``, a selector): what is wrong."""
    overlaps = page.evaluate(OVERLAPS, scope)
    contrast = page.evaluate(CONTRAST, scope)
    assert overlaps["checked"] > 5 and contrast["checked"] > 5, (overlaps["checked"], contrast["checked"])
    return overlaps["wrong"] + contrast["wrong"]


def tab_through(page: Any, presses: int) -> list[dict[str, Any]]:
    """Press Tab ``presses`` times; where the focus went each time."""
    found = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is not None:
            found.append(focused)
    return found


def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: ``$ROLLOUT_TEST_ARTIFACTS``, else the test's own folder (printed)."""
    folder = Path(os.environ.get("ROLLOUT_TEST_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {folder}")
    return folder
