// The overview: one row per environment of every project, flag-offs at the top, filtered, searched
// and sorted in the page; rows change in place as the server pushes their changed fields. Only the
// rows in view (and a margin) are in the document, so 500 environments load and scroll as 30 do; the
// rows around a focused link are always there, so Tab walks through every one.
"use strict";

const ROW_H = 46; // px, fixed by the stylesheet (tr.row)
const MARGIN = 30; // rows drawn beyond each edge of the view (drawn again when the view is a third of it from an edge)

const rows = new Map(); // key -> {row, tr}
const ATTENTION = { rolled_back: 0, "completed, flag off": 0, interrupted: 1, awaiting_approval: 2, held: 3 };
const STATUS_ORDER = ["rolled_back", "completed, flag off", "interrupted", "awaiting_approval", "held", "running", "idle", "completed"];
const controls = ["q", "status", "project", "sort"].map((id) => document.getElementById(id));
let order = [];

function envUrl(row) {
  return `/env/${encodeURIComponent(row.project)}/${encodeURIComponent(row.env)}`;
}

function percentCell(row) {
  const now = row.flag === "off" ? "flag off" : row.percent === null || row.percent === undefined ? "-" : `${row.percent}%`;
  return [el("div", { "data-role": "percent" }, now),
    el("div", { class: "sub", "data-role": "next" }, row.next_percent ? `next ${row.next_percent}%` : "")];
}

function verdictCell(row) {
  if (!row.last) return [el("div", { class: "sub" }, "no evaluation yet")];
  return [el("div", { "data-role": "verdict" }, verdictWord(row.last.verdict), row.last.metric ? ` ${row.last.metric}` : ""),
    el("div", { class: "sub", title: row.last.short }, row.last.short)];
}

function timeTexts(row) {
  const now = serverClock.now();
  const inStep = row.step_since ? `${fmt.duration(now - row.step_since)} in step` : "";
  let hold = "";
  if (row.hold_until) {
    const left = row.hold_until - now;
    hold = left > 0 ? `hold: ${fmt.duration(left)} left` : `hold: ${fmt.duration(-left)} over`;
  }
  return [inStep, hold];
}

function timeCell(row) {
  const [inStep, hold] = timeTexts(row);
  return [el("div", { "data-role": "in-step" }, inStep || "-"), el("div", { class: "sub", "data-role": "hold" }, hold)];
}

function driverCell(row) {
  const d = row.driver || { who: "nobody" };
  return [el("div", { "data-role": "driver", title: d.who }, d.who),
    d.gone ? el("div", { class: "sub", title: `${d.gone} is gone` }, `${d.gone} is gone`) : null];
}

function cellsOf(row) {
  const status = el("div", {}, statusBadge(row.status), row.paused ? [" ", el("span", { class: "tag", "data-role": "paused" }, "‖ PAUSED")] : null);
  return [
    el("td", {}, status, row.flag_off ? el("div", { class: "sub" }, `flag off ${fmt.clock(row.flag_off.at)}`) : null),
    el("td", {}, el("div", { title: row.step || "" }, row.step || (row.status === "completed" ? "all steps done" : "-")),
      el("div", { class: "sub" }, row.phase ? `phase ${row.phase}` : "no phase")),
    el("td", {}, ...percentCell(row)),
    el("td", {}, ...verdictCell(row)),
    el("td", {}, ...timeCell(row)),
    el("td", {}, ...driverCell(row)),
  ];
}

// a row's element is made once and kept (a focused link stays focused); its other cells are redrawn
function renderRow(row, tr) {
  if (!tr) {
    tr = el("tr", { class: "row", "data-key": row.key, "data-env": row.env },
      el("td", {}, el("div", {}, el("a", { class: "env", href: envUrl(row) }, row.env)), el("div", { class: "sub", title: row.project }, row.project)));
  }
  tr.classList.toggle("flagged", Boolean(row.flag_off));
  tr.dataset.verdictAt = row.last ? row.last.at : "";
  while (tr.cells.length > 1) tr.lastChild.remove();
  tr.append(...cellsOf(row));
  return tr;
}

function matches(row, q, status, project) {
  if (project && row.project !== project) return false;
  if (status === "attention" && !(row.status in ATTENTION) && !row.paused) return false;
  if (status === "paused" && !row.paused) return false;
  if (status === "completed" && !row.status.startsWith("completed")) return false;
  if (status && !["attention", "paused", "completed"].includes(status) && row.status !== status) return false;
  if (!q) return true;
  const text = [row.env, row.project, row.phase, row.step, row.status, row.driver && row.driver.who,
    row.last && row.last.metric, row.last && row.last.short, row.last && row.last.verdict].join(" ").toLowerCase();
  return q.split(/\s+/).every((word) => text.includes(word));
}

function compare(sort) {
  const playbook = (a, b) => a.order[0] - b.order[0] || a.order[1] - b.order[1] || a.env.localeCompare(b.env);
  const rank = (r) => { const i = STATUS_ORDER.indexOf(r.status); return i < 0 ? 99 : i; };
  return {
    attention: (a, b) => (ATTENTION[a.status] ?? (a.paused ? 4 : 9)) - (ATTENTION[b.status] ?? (b.paused ? 4 : 9)) || playbook(a, b),
    playbook,
    status: (a, b) => rank(a) - rank(b) || playbook(a, b),
    project: (a, b) => a.project.localeCompare(b.project) || playbook(a, b),
    name: (a, b) => a.env.localeCompare(b.env) || a.project.localeCompare(b.project),
    verdict: (a, b) => ((b.last && b.last.at) || 0) - ((a.last && a.last.at) || 0) || playbook(a, b),
  }[sort] || playbook;
}

function arrange() {
  const [q, status, project, sort] = controls.map((c) => c.value);
  const wanted = [...rows.values()].map((r) => r.row).filter((r) => matches(r, q.trim().toLowerCase(), status, project));
  wanted.sort(compare(sort));
  order = wanted.map((r) => r.key);
  document.getElementById("count").textContent =
    order.length === rows.size ? `${rows.size} environments` : `${order.length} of ${rows.size} environments shown`;
  document.getElementById("envs").setAttribute("aria-rowcount", order.length + 1);
  document.querySelectorAll("#envs th").forEach((th) => th.setAttribute("aria-sort", th.dataset.sort === sort ? "ascending" : "none"));
  place(true);
}

// a person changed a filter: the rows again, and the address says it (a link to share, a reload keeps it)
function refilter() {
  const params = new URLSearchParams();
  controls.forEach((c) => c.value && !(c.id === "sort" && c.value === "attention") && params.set(c.id, c.value));
  history.replaceState(null, "", params.toString() ? `?${params}` : location.pathname);
  arrange();
}

// the rows in view, a margin around them, and around the focused row; the rest is two spacers
const body = document.querySelector("#envs tbody");
const padTop = el("tr", { class: "pad", "aria-hidden": "true" }, el("td", { colspan: 7 }));
const padBottom = el("tr", { class: "pad", "aria-hidden": "true" }, el("td", { colspan: 7 }));
body.append(padTop, padBottom);
let shown = [0, 0];

function place(force) {
  const top = body.getBoundingClientRect().top;
  const inView = [Math.max(0, Math.floor(-top / ROW_H)), Math.min(order.length, Math.ceil((innerHeight - top) / ROW_H))];
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("tr.row");
  const at = focused ? order.indexOf(focused.dataset.key) : -1;
  const wanted = at >= 0 ? [Math.min(inView[0], at), Math.max(inView[1], at + 1)] : inView;
  // the rows drawn change only when the view comes near their edge: most scrolled frames change nothing
  const near = MARGIN / 3;
  const covered = (wanted[0] >= shown[0] + near || shown[0] === 0) && (wanted[1] <= shown[1] - near || shown[1] === order.length);
  if (!force && covered) return;
  const first = Math.max(0, wanted[0] - MARGIN);
  const last = Math.min(order.length, wanted[1] + MARGIN);
  shown = [first, last];
  const want = order.slice(first, last).map((k) => {
    const entry = rows.get(k);
    if (!entry.tr) entry.tr = renderRow(entry.row); // a row is built the first time it is drawn
    return entry.tr;
  });
  const keep = new Set(want);
  [...body.querySelectorAll("tr.row")].forEach((tr) => keep.has(tr) || tr.remove());
  let anchor = padTop.nextSibling;
  want.forEach((tr, i) => {
    tr.setAttribute("aria-rowindex", first + i + 2);
    if (anchor === tr) anchor = anchor.nextSibling;
    else body.insertBefore(tr, anchor);
  });
  padTop.firstChild.style.height = `${first * ROW_H}px`;
  padBottom.firstChild.style.height = `${(order.length - last) * ROW_H}px`;
}

let placing = false;
window.addEventListener("scroll", () => {
  if (placing) return;
  placing = true;
  requestAnimationFrame(() => { placing = false; place(false); });
}, { passive: true });
window.addEventListener("resize", () => place(false));
body.addEventListener("focusin", () => place(false));

function renderOffs() {
  const offs = [...rows.values()].map((r) => r.row).filter((r) => r.flag_off).sort((a, b) => b.flag_off.at - a.flag_off.at);
  const box = document.getElementById("offs");
  box.hidden = offs.length === 0;
  document.getElementById("offs-title").textContent = `Flag turned off in ${offs.length} environment${offs.length === 1 ? "" : "s"}`;
  const items = offs.slice(0, 5).map((r) => el("li", { "data-key": r.key },
    el("a", { href: envUrl(r) }, `${r.env}`), ` (${r.project}): `,
    el("strong", {}, r.flag_off.automatic ? "turned off by the gates" : `turned off by ${r.flag_off.by}`),
    ` at ${fmt.clock(r.flag_off.at)}: ${r.flag_off.reason}`));
  if (offs.length > 5) {
    const more = el("button", { type: "button" }, `show all ${offs.length}`);
    more.onclick = () => { controls[1].value = "rolled_back"; refilter(); };
    items.push(el("li", {}, `and ${offs.length - 5} more: `, more));
  }
  box.querySelector("ul").replaceChildren(...items);
}

function put(row) {
  const had = rows.get(row.key);
  // a drawn row is redrawn in place; one out of view is rebuilt when it is drawn
  const drawn = had && had.tr && had.tr.isConnected;
  rows.set(row.key, { row, tr: drawn ? renderRow(row, had.tr) : null });
}

let projectCount = 0;

function sayTotal() {
  document.getElementById("total").textContent = `(${rows.size} in ${projectCount} project${projectCount === 1 ? "" : "s"})`;
}

function snapshot(data) {
  rows.forEach(({ tr }) => tr && tr.remove());
  rows.clear();
  data.rows.forEach(put);
  document.getElementById("readonly").hidden = data.writable;
  document.getElementById("problems").textContent = (data.problems || []).join("; ");
  projectCount = data.projects.length;
  sayTotal();
  const projects = document.getElementById("project");
  const chosen = projects.value || params.get("project") || "";
  projects.replaceChildren(el("option", { value: "" }, "every project"), ...data.projects.map((p) => el("option", { value: p }, p)));
  projects.value = chosen;
  renderOffs();
  arrange();
  performance.mark("rollout:rows-shown");
}

function change(data) {
  let offs = false;
  const problems = document.getElementById("problems");
  if (problems.textContent.startsWith("still reading")) problems.textContent = "";
  Object.entries(data.rows || {}).forEach(([key, diff]) => {
    const had = rows.get(key);
    if (diff === null) {
      if (had && had.tr) had.tr.remove();
      rows.delete(key);
      offs = true;
      return;
    }
    const row = had ? { ...had.row, ...diff } : diff;
    offs = offs || "flag_off" in diff || !had;
    put(row);
  });
  if (offs) renderOffs();
  sayTotal();
  arrange();
}

// the clocks in the rows in view run in the page: no traffic for a second passing
setInterval(() => {
  for (const key of order.slice(shown[0], shown[1])) {
    const { row, tr } = rows.get(key);
    if (!row.step_since && !row.hold_until) continue;
    const [inStep, hold] = timeTexts(row);
    tr.querySelector("[data-role=in-step]").textContent = inStep || "-";
    tr.querySelector("[data-role=hold]").textContent = hold;
  }
}, 1000);

const params = new URLSearchParams(location.search);
controls.forEach((c) => { if (params.get(c.id)) c.value = params.get(c.id); c.addEventListener("input", refilter); });
document.querySelector("form.filters").addEventListener("submit", (e) => e.preventDefault());
new Live("/api/overview", "/api/events", snapshot, change).start();
