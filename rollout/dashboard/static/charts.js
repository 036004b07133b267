// An environment's run as charts sharing one time axis, drawn as SVG at the page's real width: the
// percentage of customers, then each metric with its target and alert, a gap (shaded, labelled
// "no data") where it had no data, treatment and control as two lines where they are compared.
// Labels are placed so that none overlaps another (the browser test checks every pair).
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const BOX = { plot: 92, left: 76, right: 150, top: 12, bottom: 10, axis: 22, label: 14 };
const COLOUR = { percent: "#1d4ed8", value: "#6d28d9", treatment: "#6d28d9", control: "#374151", target: "#15803d", alert: "#b91c1c", off: "#b91c1c", grid: "#e5e7eb", gap: "#eef0f3", text: "#374151" };
const POINT = { pass: null, hold: "#c2410c", fail: "#b91c1c" };

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVGNS, tag);
  Object.entries(attrs || {}).forEach(([k, v]) => v !== null && v !== undefined && node.setAttribute(k, v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function label(attrs, text) {
  return svgEl("text", { "font-size": 11, fill: COLOUR.text, "data-label": "", "paint-order": "stroke", stroke: "#fff", "stroke-width": 3, ...attrs }, text);
}

// what the charts draw, from the run's verdicts (oldest first) and audit entries
function chartModel(verdicts, audit, since) {
  const percent = audit.filter((a) => a.percent !== undefined && a.percent !== null && a.at >= since)
    .sort((a, b) => a.at - b.at).map((a) => [a.at, a.percent]);
  const offs = audit.filter((a) => a.action === "flag_off" && a.at >= since).map((a) => a.at);
  const metrics = new Map();
  verdicts.forEach((v) => v.metrics.forEach((m) => {
    if (!metrics.has(m.metric)) metrics.set(m.metric, { metric: m.metric, points: [] });
    const spec = metrics.get(m.metric);
    Object.assign(spec, { unit: m.unit, role: m.role, target: m.target, alert: m.alert, compare: Boolean(m.compare) });
    spec.points.push({ t: v.at, v: m.value, samples: m.samples, verdict: m.verdict, reason: m.reason, treatment: m.treatment, control: m.control });
  }));
  // a long silence between evaluations (over 3 times the usual interval) is a gap too, not a straight line
  const steps = verdicts.slice(1).map((v, i) => v.at - verdicts[i].at).sort((a, b) => a - b);
  const usual = steps.length ? steps[Math.floor(steps.length / 2)] : 0;
  if (usual > 0) {
    metrics.forEach((spec) => {
      spec.points = spec.points.flatMap((p, i) => (i && p.t - spec.points[i - 1].t > 3 * usual
        ? [{ t: (p.t + spec.points[i - 1].t) / 2, v: null, samples: 0, silent: true }, p] : [p]));
    });
  }
  const times = [...verdicts.map((v) => v.at), ...percent.map((p) => p[0]), ...offs];
  const start = times.length ? Math.min(...times) : since;
  const end = times.length ? Math.max(...times) : since;
  return { start, end: end > start ? end : start + 1, percent, offs, metrics: [...metrics.values()] };
}

function niceStep(span, most) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  return steps.find((s) => span / s <= most) || Math.ceil(span / most / 86400) * 86400;
}

// labels at `x`, wanted at heights `ys`, moved apart to `gap` pixels within [lo, hi]
function spread(items, gap, lo, hi) {
  items.sort((a, b) => a.y - b.y);
  for (let i = 0; i < items.length; i++) items[i].y = Math.max(items[i].y, lo, i ? items[i - 1].y + gap : lo);
  for (let i = items.length - 1; i >= 0; i--) items[i].y = Math.min(items[i].y, i < items.length - 1 ? items[i + 1].y - gap : hi);
  return items;
}

class Axis {
  constructor(model, width) {
    Object.assign(this, { start: model.start, end: model.end, width });
    this.plotWidth = Math.max(80, width - BOX.left - BOX.right);
    this.step = niceStep(this.end - this.start, Math.max(2, Math.floor(this.plotWidth / 110)));
    this.ticks = [];
    for (let t = Math.ceil(this.start / this.step) * this.step; t <= this.end; t += this.step) this.ticks.push(t);
  }

  x(t) { return BOX.left + ((t - this.start) / (this.end - this.start)) * this.plotWidth; }

  strip(which) {
    const node = svgEl("svg", { width: this.width, height: BOX.axis, viewBox: `0 0 ${this.width} ${BOX.axis}`, "aria-hidden": "true", "data-chart": `axis-${which}` });
    this.ticks.forEach((t) => node.append(label({ x: this.x(t), y: which === "top" ? 14 : 16, "text-anchor": "middle" }, fmt.clock(t))));
    return node;
  }
}

// one panel: `spec` = {name, unit, series: [{name, colour, dash, points: [[t, v|null, verdict]]}],
// thresholds: [{name, value, colour, dash}], nodata, offs, offLabel}
function panel(spec, axis) {
  const height = BOX.top + BOX.plot + BOX.bottom;
  const node = svgEl("svg", { width: axis.width, height, viewBox: `0 0 ${axis.width} ${height}`, role: "img", "aria-label": spec.aria, "data-chart": spec.name });
  const values = spec.series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v !== null && v !== undefined)
    .concat(spec.thresholds.map((t) => t.value));
  let lo = values.length ? Math.min(...values) : 0;
  let hi = values.length ? Math.max(...values) : 1;
  if (spec.fixed) [lo, hi] = spec.fixed;
  const pad = (hi - lo) * 0.08 || Math.max(Math.abs(hi) * 0.1, spec.unit === "rate" ? 0.01 : 1);
  if (!spec.fixed) { lo = values.length && Math.min(...values) >= 0 && !spec.signed ? Math.max(0, lo - pad) : lo - pad; hi += pad; }
  if (spec.unit === "rate" && !spec.signed) { lo = Math.max(0, lo); hi = Math.min(1, hi); if (hi <= lo) hi = lo + 0.01; }
  const top = BOX.top, bottom = BOX.top + BOX.plot, right = BOX.left + axis.plotWidth;
  const y = (v) => bottom - ((v - lo) / (hi - lo)) * BOX.plot;
  node.append(svgEl("rect", { x: BOX.left, y: top, width: axis.plotWidth, height: BOX.plot, fill: "#fff", stroke: "#9ca3af" }));
  axis.ticks.forEach((t) => node.append(svgEl("line", { x1: axis.x(t), x2: axis.x(t), y1: top, y2: bottom, stroke: COLOUR.grid })));
  const show = (v) => (spec.signed ? fmt.signed(v, spec.unit, spec.name) : fmt.value(v, spec.unit, spec.name));
  node.append(label({ x: BOX.left - 6, y: top + 9, "text-anchor": "end" }, spec.fixed ? `${hi}%` : show(hi)));
  node.append(label({ x: BOX.left - 6, y: bottom, "text-anchor": "end" }, spec.fixed ? `${lo}%` : show(lo)));

  // where there was no data: shaded, and said
  const main = spec.series[0];
  if (main && main.points.length && main.points.every((p) => p[1] === null || p[1] === undefined)) {
    node.append(svgEl("rect", { x: BOX.left + 1, y: top + 1, width: axis.plotWidth - 2, height: BOX.plot - 2, fill: COLOUR.gap, "data-gap": "" }));
    node.append(label({ x: BOX.left + axis.plotWidth / 2, y: top + BOX.plot / 2 + 4, "text-anchor": "middle", stroke: COLOUR.gap, "data-role": "no-data" }, spec.nodata || "no data"));
  } else if (main) {
    gaps(main.points).forEach(([a, b]) => {
      const x0 = axis.x(a), x1 = Math.max(axis.x(b), x0 + 3);
      node.append(svgEl("rect", { x: x0, y: top + 1, width: x1 - x0, height: BOX.plot - 2, fill: COLOUR.gap, "data-gap": "" }));
      if (x1 - x0 >= 64) node.append(label({ x: (x0 + x1) / 2, y: bottom - 6, "text-anchor": "middle", stroke: COLOUR.gap, "data-role": "no-data" }, "no data"));
    });
  }

  const side = [];
  spec.thresholds.forEach((t) => {
    if (t.value < lo || t.value > hi) return;
    node.append(svgEl("line", { x1: BOX.left, x2: right, y1: y(t.value), y2: y(t.value), stroke: t.colour, "stroke-dasharray": t.dash, "stroke-width": 1.5 }));
    side.push({ y: y(t.value) + 4, text: `${t.name} ${show(t.value)}`, colour: t.colour, role: t.name });
  });
  spec.series.forEach((s) => {
    let d = "";
    let open = false;
    s.points.forEach(([t, v]) => {
      if (v === null || v === undefined) { open = false; return; }
      d += `${open ? "L" : "M"}${axis.x(t).toFixed(1)},${y(v).toFixed(1)}`;
      open = true;
    });
    if (d) node.append(svgEl("path", { d, fill: "none", stroke: s.colour, "stroke-width": 2, "stroke-dasharray": s.dash || null, "stroke-linejoin": "round" }));
    const known = s.points.filter((p) => p[1] !== null && p[1] !== undefined);
    known.filter((p, i) => known.length <= 160 || POINT[p[2]] || i === known.length - 1).forEach(([t, v, verdict]) => {
      const dot = svgEl("circle", { cx: axis.x(t), cy: y(v), r: POINT[verdict] ? 3.5 : 2.5, fill: POINT[verdict] || s.colour });
      dot.append(svgEl("title", {}, `${fmt.clock(t)}: ${s.name} ${show(v)}${verdict ? ` (${verdict})` : ""}`));
      node.append(dot);
    });
    if (s.legend && known.length) side.push({ y: y(known[known.length - 1][1]) + 4, text: `${s.name} ${show(known[known.length - 1][1])}`, colour: s.colour, role: s.name });
  });
  spread(side, BOX.label, top + 9, bottom + 4).forEach((item) =>
    node.append(label({ x: right + 8, y: item.y, fill: item.colour, "data-role": item.role }, item.text)));

  spec.offs.forEach((t, i) => {
    const x = axis.x(t);
    node.append(svgEl("line", { x1: x, x2: x, y1: top, y2: bottom, stroke: COLOUR.off, "stroke-width": 2, "data-role": "flag-off" }));
    if (spec.offLabel && i === spec.offs.length - 1) {
      const left = x - BOX.left > 120;
      node.append(label({ x: left ? x - 5 : x + 5, y: top + 12, "text-anchor": left ? "end" : "start", fill: COLOUR.off, "font-weight": 700 }, `flag off ${fmt.clock(t)}`));
    }
  });
  return node;
}

// [from, to] spans with no value: from the last point with one to the next
function gaps(points) {
  const found = [];
  let start = null;
  points.forEach((p, i) => {
    const missing = p[1] === null || p[1] === undefined;
    if (missing && start === null) start = i > 0 ? points[i - 1][0] : p[0];
    if (!missing && start !== null) { found.push([start, p[0]]); start = null; }
  });
  if (start !== null) found.push([start, points[points.length - 1][0]]);
  return found;
}

function roleWords(role) {
  return role === "shadow" ? "shadow: watched, never decides" : role === "signal" ? "signal: stops the step for a person" : null;
}

function head(name, parts) {
  return el("div", { class: "panel-head" }, el("span", { class: "name" }, name), ...parts.filter(Boolean).map((p) => (p instanceof Node ? p : el("span", {}, p))));
}

// every panel of `model` into `container`, at its width
function drawCharts(container, model) {
  const width = Math.max(360, Math.floor(container.clientWidth));
  const axis = new Axis(model, width);
  const panels = [axis.strip("top")];
  if (model.percent.length) {
    const last = model.percent[model.percent.length - 1];
    const points = model.percent.map(([t, p]) => [t, p]);
    points.push([model.end, last[1]]);
    const stepped = points.flatMap((p, i) => (i ? [[p[0], points[i - 1][1]], p] : [p]));
    panels.push(el("div", { class: "panel", "data-panel": "percent" },
      head("percentage of customers", [el("span", { class: "value", "data-role": "current-value" }, `${last[1]}%`), "the flag's writes, as recorded"]),
      panel({ name: "percent", unit: "", fixed: [0, 100], series: [{ name: "percent", colour: COLOUR.percent, points: stepped }], thresholds: [], offs: model.offs, offLabel: true, aria: `percentage of customers over time, now ${last[1]}%` }, axis)));
  }
  model.metrics.forEach((m) => {
    const last = m.points[m.points.length - 1];
    const nodata = last.v === null || last.v === undefined;
    const lastReason = nodata ? shortReason(last.reason) : null;
    const valueText = m.compare && !nodata && last.treatment !== undefined && last.treatment !== null
      ? `${fmt.value(last.treatment, m.unit, m.metric)} vs ${fmt.value(last.control, m.unit, m.metric)}`
      : fmt.value(last.v, m.unit, m.metric);
    const value = nodata
      ? el("span", { class: "nodata", "data-role": "current-value", "data-nodata": "" }, `no data (${last.samples} samples)`)
      : el("span", { class: "value", "data-role": "current-value" }, valueText);
    const cohorts = m.compare && m.points.some((p) => p.treatment !== null && p.treatment !== undefined);
    const parts = [value, verdictWord(last.verdict), nodata ? null : `${last.samples} samples`];
    if (m.compare) {
      parts.push(nodata ? null : `difference ${fmt.signed(last.v, m.unit, m.metric)}`,
        `target ${fmt.signed(m.target, m.unit, m.metric)} · alert ${fmt.signed(m.alert, m.unit, m.metric)} (treatment minus control)`);
      if (cohorts) parts.push(el("span", { class: "legend-t" }, "━ treatment"), el("span", { class: "legend-c" }, "╍ control"));
    } else {
      parts.push(`target ${fmt.value(m.target, m.unit, m.metric)} · alert ${fmt.value(m.alert, m.unit, m.metric)}`);
    }
    parts.push(roleWords(m.role), nodata && lastReason ? el("span", { class: "muted" }, lastReason) : null);
    const series = cohorts
      ? [{ name: "treatment", colour: COLOUR.treatment, legend: true, points: m.points.map((p) => [p.t, p.treatment ?? null, p.verdict]) },
        { name: "control", colour: COLOUR.control, dash: "6,4", legend: true, points: m.points.map((p) => [p.t, p.control ?? null]) }]
      : [{ name: m.metric, colour: COLOUR.value, points: m.points.map((p) => [p.t, p.v, p.verdict]) }];
    const thresholds = cohorts ? [] : [
      { name: "target", value: m.target, colour: COLOUR.target, dash: "2,3" },
      { name: "alert", value: m.alert, colour: COLOUR.alert, dash: "7,3" }];
    panels.push(el("div", { class: "panel", "data-panel": m.metric },
      head(m.metric, parts),
      panel({ name: m.metric, unit: m.unit, signed: m.compare && !cohorts, series, thresholds, offs: model.offs, nodata: nodata ? `no data: ${lastReason}` : "no data",
        aria: `${m.metric} over time: ${nodata ? "no data now" : `now ${valueText}`}` }, axis)));
  });
  if (panels.length === 1) panels.push(el("p", { class: "muted" }, "No evaluation in this run yet."));
  else panels.push(axis.strip("bottom"));
  container.replaceChildren(...panels);
}

function shortReason(reason) {
  if (!reason) return "";
  const cut = reason.search(/ \([^()]*\bsamples?\b/);
  return cut > 0 ? reason.slice(0, cut) : reason;
}
