// One environment's page: its steps as a timeline with the hold's clock, its run's charts on one time
// axis, its verdicts as short lines that open, its audit as a filterable timeline in words, and the
// actions behind the token. Pushed changes add to what was loaded.
"use strict";

const [, , projectName, envName] = location.pathname.split("/").map(decodeURIComponent);
const key = `${projectName}/${envName}`;
const page = { row: null, steps: [], verdicts: [], audit: [], since: 0, flag: null, writable: false };
const operator = { token: () => document.getElementById("token").value, actor: () => document.getElementById("actor").value };
const FLAG_ACTIONS = new Set(["flag_intent", "ramp", "flag_off", "flag_off_failed", "flag_off_confirmed", "flag_off_unconfirmed", "configure", "promote"]);
const PEOPLE_ACTIONS = new Set(["approved", "approval_requested", "paused", "continued", "promotion_requested", "resumed_after_rollback"]);
const STEP_ACTIONS = new Set(["phase_started", "phase_completed", "step_started", "step_done", "gate_passed", "awaiting_approval", "resumed", "interrupted", "lock_recovered", "attention_needed"]);

// --- the head: name, status, who drives it, the flag as the service reports it --------------------

function renderHead() {
  const row = page.row;
  document.title = `rollout: ${row.env} (${row.project})`;
  document.getElementById("name").textContent = row.env;
  document.getElementById("crumb-project").textContent = row.project;
  document.getElementById("crumb-env").textContent = row.env;
  document.getElementById("act-env").textContent = row.env;
  document.getElementById("status").replaceChildren(statusBadge(row.status));
  document.getElementById("paused").replaceChildren(row.paused ? el("span", { class: "tag", "data-role": "paused" }, "‖ PAUSED by a person") : "");
  const flag = page.flag;
  const flagText = flag
    ? `flag ${flag.flag}${flag.flag === "on" && flag.percent !== null ? ` at ${flag.percent}%` : ""} (${flag.source})`
    : `flag ${row.flag === "on" ? `on${row.percent !== null ? ` at ${row.percent}%` : ""}` : row.flag || "?"} (as rollout recorded it)`;
  document.getElementById("facts").replaceChildren(
    el("span", {}, `phase ${row.phase || "-"}`),
    el("span", {}, `step ${row.step || (row.status.startsWith("completed") ? "all done" : "-")}`),
    el("span", { "data-role": "flag" }, flagText),
    el("span", { "data-role": "driver" }, `driven by ${row.driver.who}${row.driver.gone ? ` (${row.driver.gone} is gone)` : ""}`),
    ...(page.commit ? [el("span", {}, `commit ${page.commit}`)] : []),
    ...(page.reason ? [el("span", {}, `reason: ${page.reason}`)] : []));
  const banner = document.getElementById("offbanner");
  banner.hidden = !row.flag_off;
  if (row.flag_off) {
    banner.textContent = `✕ Flag turned off at ${fmt.when(row.flag_off.at)} by ${row.flag_off.automatic ? "the gates" : row.flag_off.by}: ${row.flag_off.reason}`;
  }
  const steerable = !["rolled_back", "completed", "completed, flag off"].includes(row.status);
  const show = {
    rollback: !(row.status === "rolled_back" && (flag ? flag.flag : row.flag) === "off"),
    pause: steerable && !row.paused, continue: steerable && row.paused,
    promote: steerable, "promote-full": steerable, approve: row.status === "awaiting_approval",
  };
  document.querySelectorAll("[data-action]").forEach((b) => { b.hidden = !show[b.dataset.action]; });
  document.getElementById("noaction").hidden = Object.values(show).some(Boolean);
  document.getElementById("actions").hidden = !page.writable;
  document.getElementById("readonly").hidden = page.writable;
}

// --- steps: done, now, to come; a ramp's percentages and the hold's clock; the forecast's place ----

function holdWords(step) {
  if (!step.observe_started || step.state !== "current") return null;
  const now = serverClock.now();
  const held = now - step.observe_started;
  const left = step.hold_s - held;
  const next = page.row.last && step.interval_s ? page.row.last.at + step.interval_s - now : null;
  return {
    held, left,
    text: (left > 0 ? `held ${fmt.duration(held)} of ${fmt.duration(step.hold_s)}: ${fmt.duration(left)} left` : `held ${fmt.duration(held)}: ${fmt.duration(-left)} past the hold, waiting for the gates to decide`)
      + (next !== null && ["running", "held"].includes(page.row.status) ? `; next evaluation in ${fmt.duration(Math.max(0, next))}` : ""),
  };
}

function renderSteps() {
  const STATE = { done: "✓ done", current: "▶ now", next: "○ to come", stopped: "✕ stopped here: flag off" };
  const items = withForecasts(page.steps).map((step, i) => {
    const li = el("li", { class: `${step.state} ${step.kind}`, "data-state": step.state, "data-step": i },
      el("span", { class: "state" }, STATE[step.state]),
      el("span", { class: "label" }, step.label),
      el("span", { class: "muted" }, step.kind + (step.hold_s ? `, held ${fmt.duration(step.hold_s)}` : "")));
    if (step.percentages) {
      li.append(el("ol", { class: "pcts", "aria-label": "percentages" }, ...step.percentages.map((p, j) => {
        const state = j < step.in_force || (j === step.in_force && step.state === "done") ? "done"
          : j === step.in_force ? (step.state === "stopped" ? "off" : "current") : "next";
        const role = { current: "in-force", next: "planned", done: "passed", off: "turned-off" }[state];
        const note = { done: " ✓", current: " ◀ in force", off: " ✕ turned off", next: "" }[state];
        return el("li", { class: state, "data-role": role }, `${p}%`, el("span", { style: "font-weight:400" }, note));
      })));
    }
    const hold = holdWords(step);
    if (hold) {
      li.append(el("div", { class: "hold", "data-role": "hold" }, hold.text),
        el("progress", { max: step.hold_s, value: Math.min(step.hold_s, hold.held), "aria-label": "time held" }));
    }
    // FORECAST: a step may carry `forecast` (short strings: how long its gates need to decide at the
    // expected traffic, from `rollout plan`); shown here when the page's JSON has it
    if (step.forecast && Object.keys(step.forecast).length) {
      li.append(el("div", { class: "forecast", "data-role": "forecast" }, el("strong", {}, "forecast"),
        el("dl", {}, ...Object.entries(step.forecast).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]))));
    }
    return li;
  });
  document.getElementById("steps").replaceChildren(...(items.length ? items : [el("li", {}, "This environment is in no phase of the playbook.")]));
}

// --- verdicts: short lines, identical neighbours folded, each opening to every metric -------------

function renderVerdicts() {
  const groups = [];
  [...page.verdicts].reverse().forEach((v) => {
    const last = groups[groups.length - 1];
    const same = last && last.verdict.verdict === v.verdict && last.verdict.percent === v.percent && last.verdict.short === v.short;
    if (same) { last.count += 1; last.first = v.at; } else groups.push({ verdict: v, count: 1, first: v.at });
  });
  const items = groups.slice(0, 300).map((g) => {
    const v = g.verdict;
    const when = g.count > 1 ? `${fmt.clock(g.first)} to ${fmt.clock(v.at)}` : fmt.clock(v.at);
    const table = el("table", {}, el("thead", {}, el("tr", {}, ...["metric", "verdict", "value", "samples", "why"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...v.metrics.map((m) => el("tr", {}, el("td", {}, m.metric), el("td", {}, verdictWord(m.verdict)),
        el("td", {}, fmt.value(m.value, m.unit, m.metric)), el("td", {}, String(m.samples)), el("td", {}, m.reason)))));
    return el("li", { "data-verdict-id": v.id }, el("details", {},
      el("summary", {}, verdictWord(v.verdict), v.percent !== null && v.percent !== undefined ? ` at ${v.percent}%` : "", ` · ${when} · `,
        v.metric ? el("strong", {}, v.metric) : null, ` ${v.short.startsWith(v.metric || "\u0000") ? v.short.slice(v.metric.length) : v.short}`,
        g.count > 1 ? el("span", { class: "muted" }, ` (×${g.count})`) : null),
      v.summary ? el("p", {}, v.summary) : null, table));
  });
  document.getElementById("verdicts").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "No verdict in this run yet.")]));
}

// --- the audit, in words, filtered -------------------------------------------------------------------

function kindOf(entry) {
  if (PEOPLE_ACTIONS.has(entry.action) || (entry.action === "flag_off" && !entry.automatic)) return ["people", FLAG_ACTIONS.has(entry.action) ? "flag" : null];
  if (FLAG_ACTIONS.has(entry.action)) return ["flag"];
  if (STEP_ACTIONS.has(entry.action)) return ["steps"];
  return ["other"];
}

function renderAudit() {
  const q = document.getElementById("audit-q").value.trim().toLowerCase();
  const kind = document.getElementById("audit-kind").value;
  const shown = [...page.audit].reverse().filter((a) => (!kind || kindOf(a).includes(kind))
    && (!q || `${a.who} ${a.action} ${a.words}`.toLowerCase().includes(q)));
  document.getElementById("audit").replaceChildren(...shown.slice(0, 500).map((a) => el("li", { "data-action-name": a.action },
    el("span", { title: fmt.when(a.at) }, fmt.clock(a.at)), el("span", { class: "who" }, a.who),
    el("span", {}, el("span", { class: "what" }, a.action.replace(/_/g, " ")), a.words ? `: ${a.words}` : ""))));
  document.getElementById("audit-count").textContent = `${shown.length} of ${page.audit.length} entries`;
}

function renderCharts() {
  drawCharts(document.getElementById("charts"), chartModel(page.verdicts, page.audit, page.since));
}

// --- actions: the same calls as the CLI, behind the token ----------------------------------------------

async function act(path, what, extra) {
  const reason = window.prompt(`${what} ${envName}: why? (recorded in the audit log)`);
  if (!reason) return;
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${operator.token()}`, "X-Actor": operator.actor() || "someone" },
    body: JSON.stringify({ environment: envName, project: projectName, reason, ...(extra || {}) }),
  });
  const body = await response.json();
  say(response.ok ? `${what}: ${body.status}: ${body.message}` : `${what} refused: ${body.error}`);
}

const ACTIONS = {
  rollback: () => act("/api/rollback", "Roll back"),
  pause: () => act("/api/pause", "Pause"),
  continue: () => act("/api/continue", "Continue"),
  promote: () => act("/api/promote", "Promote the current step of"),
  "promote-full": () => {
    if (window.confirm(`Turn the feature on for 100% of customers in ${envName} NOW, skipping the ramp?`)) {
      act("/api/promote", "Promote to 100%", { full: true, confirm: true });
    }
  },
  approve: () => act("/api/approve", "Approve"),
};
document.querySelectorAll("[data-action]").forEach((b) => { b.onclick = ACTIONS[b.dataset.action]; });
document.getElementById("actor").value = sessionStorage.getItem("rollout-actor") || "";
document.getElementById("actor").addEventListener("change", (e) => sessionStorage.setItem("rollout-actor", e.target.value));

// --- loading, and what the server pushes -------------------------------------------------------------

function byId(list, more) {
  const seen = new Set(list.map((x) => x.id));
  more.forEach((x) => { if (!seen.has(x.id)) { list.push(x); seen.add(x.id); } });
  list.sort((a, b) => a.id - b.id);
}

let live;

// --- forecasts: `rollout plan`'s figures per ramp percentage, fetched once (they take a second to compute) --

let forecasts = null;

function forecastWords(rows) {
  const byStep = {};
  rows.forEach((row) => {
    const catches = (row.breaches || []).filter((b) => b.catch_90_s !== null && b.catch_90_s !== undefined);
    const worst = (field) => catches.length ? Math.max(...catches.map((b) => b[field] ?? Infinity)) : null;
    const parts = [row.earliest_pass_s !== null ? `pass at ${fmt.duration(row.earliest_pass_s)} at the earliest` : "no pass within its hold"];
    const c90 = worst("catch_90_s"), c99 = worst("catch_99_s");
    if (c90 !== null) parts.push(`a 2x breach caught within ${fmt.duration(c90)} (90%)` + (Number.isFinite(c99) ? `, ${fmt.duration(c99)} (99%)` : ""));
    if (row.false_rollback_at_alert) parts.push(`false rollback at the alert ${(row.false_rollback_at_alert.probability * 100).toFixed(1)}%`);
    (row.warnings || []).forEach((w) => parts.push(`WARNING: ${w}`));
    (byStep[row.step] = byStep[row.step] || {})[`${row.percent}%`] = parts.join("; ");
  });
  return byStep;
}

async function loadForecasts() {
  try {
    const response = await fetch(`/api/forecast/${encodeURIComponent(envName)}?project=${encodeURIComponent(projectName)}`);
    if (!response.ok) return;
    const data = await response.json();
    forecasts = data.steps && data.steps.length ? forecastWords(data.steps) : { unavailable: data.unavailable };
    renderSteps();
  } catch (e) { /* a forecast is a help, never in the way */ }
}

function withForecasts(steps) {
  if (!forecasts) return steps;
  return steps.map((step) => (forecasts[step.label] ? { ...step, forecast: forecasts[step.label] } : step));
}

function snapshot(data) {
  Object.assign(page, { row: data.row, steps: data.steps, verdicts: data.verdicts, audit: data.audit, since: data.since,
    flag: data.flag, writable: data.writable, commit: data.commit, reason: data.reason });
  if (forecasts === null) { forecasts = false; loadForecasts(); }
  document.getElementById("problems").textContent = "";
  renderHead(); renderSteps(); renderCharts(); renderVerdicts(); renderAudit();
}

function change(data) {
  if (data.rows && data.rows[key] === null) { say(`${key} is gone from the dashboard`); return; }
  if (data.rows && data.rows[key]) page.row = { ...page.row, ...data.rows[key] };
  if ((data.audit || []).some((a) => ["phase_started", "resumed_after_rollback"].includes(a.action))) {
    live.start(); // a new run: its charts and verdicts start again
    return;
  }
  if (data.steps) page.steps = data.steps;
  if (data.flag) page.flag = data.flag;
  if (data.verdicts) byId(page.verdicts, data.verdicts);
  if (data.audit) byId(page.audit, data.audit);
  renderHead(); renderSteps();
  if (data.verdicts || (data.audit || []).some((a) => a.percent !== undefined)) renderCharts();
  if (data.verdicts) renderVerdicts();
  if (data.audit) renderAudit();
}

["audit-q", "audit-kind"].forEach((id) => document.getElementById(id).addEventListener("input", renderAudit));
document.querySelectorAll("form.filters").forEach((f) => f.addEventListener("submit", (e) => e.preventDefault()));
let resized;
window.addEventListener("resize", () => { clearTimeout(resized); resized = setTimeout(() => page.row && renderCharts(), 150); });
setInterval(() => {
  if (!page.row) return;
  document.querySelectorAll("#steps [data-role=hold]").forEach((node) => {
    const step = page.steps[Number(node.closest("[data-step]").dataset.step)];
    const hold = holdWords(step);
    if (hold) node.textContent = hold.text;
  });
}, 1000);
live = new Live(`/api/env/${encodeURIComponent(projectName)}/${encodeURIComponent(envName)}`,
  `/api/events?env=${encodeURIComponent(key)}`, snapshot, change);
live.start();
