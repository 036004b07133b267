// The dashboard page: polls /api/state every second and renders it. Text goes in with textContent;
// only the charts (SVG the server drew from numbers) go in as markup.
"use strict";

const operator = { token: () => document.getElementById("token").value, actor: () => document.getElementById("actor").value };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => (k === "class" ? (node.className = v) : node.setAttribute(k, v)));
  children.filter((c) => c !== null && c !== undefined).forEach((c) => node.append(c instanceof Node ? c : String(c)));
  return node;
}

function seconds(s) {
  if (s === null || s === undefined) return "-";
  const left = Math.max(0, s);
  return left >= 60 ? `${Math.floor(left / 60)}m ${String(Math.round(left % 60)).padStart(2, "0")}s` : `${left.toFixed(1)}s`;
}

// The phase at a glance: its steps with the current one marked; on a ramp, the planned percentages
// with the one in force, and the time left in the hold and to the next evaluation.
function renderGlance(env) {
  const parts = [];
  if (env.steps && env.steps.length) {
    parts.push(el("ol", { class: "steps", "data-role": "steps" },
      ...env.steps.map((s) => el("li", { class: s.state, "data-state": s.state }, s.label))));
  }
  if (env.ramp) {
    const r = env.ramp;
    const chips = r.percentages.map((p, i) =>
      el("span", { class: `pct ${i === r.in_force ? "in-force" : i < r.in_force ? "done" : ""}`, "data-role": i === r.in_force ? "in-force" : "planned" }, `${p}%`));
    const hold = r.hold_left_s === null ? "not yet observing" : r.hold_left_s > 0 ? `${seconds(r.hold_left_s)} left in the hold` : `held ${seconds(-r.hold_left_s)} past the hold`;
    parts.push(el("p", { class: "ramp", "data-role": "ramp" }, ...chips,
      el("span", { "data-role": "hold" }, hold),
      el("span", { "data-role": "next" }, r.next_evaluation_s === null ? "" : `next evaluation in ${seconds(r.next_evaluation_s)}`)));
  }
  return parts;
}

async function act(path, environment, what, extra) {
  const reason = window.prompt(`${what} ${environment}: why? (recorded in the audit log)`);
  if (!reason) return;
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${operator.token()}`, "X-Actor": operator.actor() || "someone" },
    body: JSON.stringify({ environment, reason, ...(extra || {}) }),
  });
  const body = await response.json();
  document.getElementById("message").textContent = response.ok ? `${what}: ${body.status}: ${body.message}` : `${what} refused: ${body.error}`;
  refresh();
}

function renderEnvironment(env, writable) {
  const card = el("section", { class: "env", "data-env": env.name },
    el("h2", {}, env.name, el("span", { class: `status ${env.status.replace(/[ ,]+/g, "_")}`, "data-role": "status" }, env.status.replace(/_/g, " "))),
    el("div", { class: "facts" },
      el("span", {}, `phase ${env.phase || "-"}`), el("span", {}, `step ${env.step || "-"}`),
      el("span", { "data-role": "flag" }, `flag ${env.flag}${env.percent !== null && env.percent !== undefined ? ` at ${env.percent}%` : ""}`),
      el("span", {}, `commit ${env.commit || "-"}`), el("span", {}, `lock ${env.lock || "free"}`),
      el("span", { "data-role": "evaluations" }, `${env.evaluations} evaluations`),
      env.paused ? el("span", { class: "status held", "data-role": "paused" }, "PAUSED by a person") : null));
  card.append(...renderGlance(env));
  if (env.last_verdict) {
    card.append(el("p", { class: "verdict" }, `${env.last_verdict.when}: ${env.last_verdict.summary}`));
  }
  if (env.chart) {
    const holder = el("div", { class: "chart", "data-role": "chart" });
    holder.innerHTML = env.chart;
    card.append(holder);
  }
  if (writable) {
    const buttons = el("p", {});
    if (env.flag !== "off" || env.status !== "rolled_back") {
      const back = el("button", { class: "danger", "data-action": "rollback" }, "Roll back");
      back.onclick = () => act("/api/rollback", env.name, "Roll back");
      buttons.append(back, " ");
    }
    if (env.can_steer) {
      const hold = env.paused
        ? el("button", { "data-action": "continue" }, "Continue")
        : el("button", { "data-action": "pause" }, "Pause");
      hold.onclick = () => act(env.paused ? "/api/continue" : "/api/pause", env.name, env.paused ? "Continue" : "Pause");
      const step = el("button", { "data-action": "promote" }, "Promote step");
      step.onclick = () => act("/api/promote", env.name, "Promote the current step of");
      const full = el("button", { class: "danger", "data-action": "promote-full" }, "Promote to 100% now");
      full.onclick = () => {
        if (window.confirm(`Turn the feature on for 100% of customers in ${env.name} NOW, skipping the ramp?`)) {
          act("/api/promote", env.name, "Promote to 100%", { full: true, confirm: true });
        }
      };
      buttons.append(hold, " ", step, " ", full, " ");
    }
    if (env.can_approve) {
      const approve = el("button", { "data-action": "approve" }, "Approve");
      approve.onclick = () => act("/api/approve", env.name, "Approve");
      buttons.append(approve);
    }
    card.append(buttons);
  }
  return card;
}

async function refresh() {
  let data;
  try {
    data = await (await fetch("/api/state")).json();
  } catch (error) {
    document.getElementById("updated").textContent = `cannot reach the dashboard: ${error}`;
    return;
  }
  document.getElementById("operator").hidden = !data.writable;
  document.getElementById("readonly").hidden = data.writable;
  document.getElementById("environments").replaceChildren(...data.environments.map((env) => renderEnvironment(env, data.writable)));
  document.querySelector("#timeline tbody").replaceChildren(...data.timeline.map((e) =>
    el("tr", {}, el("td", {}, e.when), el("td", {}, e.environment), el("td", {}, e.who), el("td", {}, e.what), el("td", {}, e.detail || ""))));
  document.getElementById("updated").textContent = `updated ${new Date(data.now * 1000).toISOString().slice(11, 19)}Z`;
}

refresh();
setInterval(refresh, 1000);
