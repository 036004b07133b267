// What both pages share: building elements (text always goes in as text), how values and times read,
// a status as a word with an icon, and the live connection: a snapshot, then the server's pushed
// changes (server-sent events) applied to it; a reconnect catches up from the last event id.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => {
    if (v === null || v === undefined || v === false) return;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  });
  children.flat().filter((c) => c !== null && c !== undefined && c !== false)
    .forEach((c) => node.append(c instanceof Node ? c : String(c)));
  return node;
}

const fmt = {
  // 4.1s, 2m 05s, 3h 20m, 2d 4h
  duration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "-";
    const a = Math.abs(s);
    if (a < 60) return `${a.toFixed(a < 10 ? 1 : 0)}s`;
    if (a < 3600) return `${Math.floor(a / 60)}m ${String(Math.floor(a % 60)).padStart(2, "0")}s`;
    if (a < 86400) return `${Math.floor(a / 3600)}h ${String(Math.floor((a % 3600) / 60)).padStart(2, "0")}m`;
    return `${Math.floor(a / 86400)}d ${Math.floor((a % 86400) / 3600)}h`;
  },
  // a metric's value as rollout prints it: rates in %, latencies in ms, counts plain
  value(v, unit, metric) {
    if (v === null || v === undefined) return "no data";
    unit = unit || (metric && metric.endsWith("_rate") ? "rate" : metric && metric.endsWith("_ms") ? "latency" : "");
    if (unit === "rate") return `${(v * 100).toFixed(2)}%`;
    if (unit === "latency") return `${Math.round(v) || 0} ms`;
    return `${Number(v.toPrecision(6))}`;
  },
  signed(v, unit, metric) {
    const shown = fmt.value(Math.abs(v), unit, metric);
    return shown === fmt.value(0, unit, metric) ? shown : `${v < 0 ? "-" : "+"}${shown}`; // never "-0 ms"
  },
  clock(ts) {
    return ts === null || ts === undefined ? "-" : `${new Date(ts * 1000).toISOString().slice(11, 19)}Z`;
  },
  when(ts) {
    return ts === null || ts === undefined ? "-" : `${new Date(ts * 1000).toISOString().slice(0, 19).replace("T", " ")}Z`;
  },
};

// a status is always a word and an icon; the colour only repeats them
const STATUS = {
  idle: ["○", "idle"], running: ["▶", "running"], held: ["◔", "held"], awaiting_approval: ["⚑", "awaiting approval"],
  rolled_back: ["✕", "rolled back"], completed: ["✓", "completed"], "completed, flag off": ["⚠", "completed, flag off"],
  interrupted: ["⚠", "interrupted"],
};
const VERDICT = { pass: "✓", hold: "◔", fail: "✕" };

function statusBadge(status) {
  const [icon, word] = STATUS[status] || ["•", status.replace(/_/g, " ")];
  return el("span", { class: `status ${status.replace(/[ ,]+/g, "_")}`, "data-role": "status", "data-status": status },
    el("span", { "aria-hidden": "true" }, icon), word);
}

function verdictWord(verdict) {
  return el("span", { class: `verdict ${verdict}`, "data-verdict": verdict },
    el("span", { "aria-hidden": "true" }, VERDICT[verdict] || "•"), ` ${verdict.toUpperCase()}`);
}

// the engine's clock as the server last told it, moved on by the browser's
const serverClock = {
  offset: 0,
  sync(now) { if (typeof now === "number") this.offset = now - Date.now() / 1000; },
  now() { return Date.now() / 1000 + this.offset; },
};

// A snapshot from `url`, then its changes from the event stream; `onSnapshot(data)` and
// `onChange(change)` render them. A `reset` event (the events missed are gone) loads again.
class Live {
  constructor(url, stream, onSnapshot, onChange) {
    Object.assign(this, { url, stream, onSnapshot, onChange, source: null, lastId: null });
  }

  async start() {
    this.close();
    let data;
    try {
      const response = await fetch(this.url);
      data = await response.json();
      if (!response.ok) throw new Error(data.error || response.statusText);
    } catch (error) {
      this.state(`cannot load: ${error.message}; trying again`, "down");
      setTimeout(() => this.start(), 2000);
      return;
    }
    serverClock.sync(data.now);
    this.lastId = data.id;
    this.onSnapshot(data);
    const sep = this.stream.includes("?") ? "&" : "?";
    this.source = new EventSource(`${this.stream}${sep}since=${encodeURIComponent(data.id)}`);
    this.source.addEventListener("open", () => this.state("live", "live"));
    this.source.addEventListener("error", () => this.state("reconnecting…", "down"));
    this.source.addEventListener("change", (event) => {
      this.lastId = event.lastEventId;
      const change = JSON.parse(event.data);
      serverClock.sync(change.now);
      this.onChange(change);
      this.state("live", "live");
    });
    this.source.addEventListener("tick", (event) => serverClock.sync(JSON.parse(event.data).now));
    this.source.addEventListener("reset", () => this.start());
  }

  close() {
    if (this.source) this.source.close();
    this.source = null;
  }

  state(words, kind) {
    const node = document.getElementById("live");
    if (!node) return;
    node.textContent = kind === "live" ? `● live, updated ${fmt.clock(serverClock.now())}` : `○ ${words}`;
    node.dataset.state = kind;
  }
}

// what an action answered, said where the actions are
function say(text) {
  const node = document.getElementById("message");
  if (node) node.textContent = text;
}
