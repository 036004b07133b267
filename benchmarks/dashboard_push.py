"""The dashboard's pushed updates under a fleet's load, measured in one run.

500 environments (5 projects of 100, real playbooks, records in real SQLite state stores) are each
evaluated every 10 s: a driver process writes their verdict rows into the stores, spread evenly (50 a
second). The dashboard runs as its own process; five headless Chromium pages (each its own browser
context, as five people's browsers) hold its overview open, newest verdicts first. Measured over the
window:

- bytes/s each page receives on its event stream (Chromium's own count, ``Network.dataReceived``);
- the dashboard process's CPU share (``/proc/PID/stat``: user + system time over wall time);
- the time from a verdict being recorded (its ``ts``, written just before its insert commits) to the
  page showing it: the frame after its row carries that verdict (a MutationObserver, then
  ``requestAnimationFrame``), on this machine's one clock; and to a plain event-stream client receiving it;
- the overview's load (navigation start to the frame after its rows are drawn, three loads) and the frame
  times while it scrolls, idle and under that load;
- and, for scale, what one page polling the old ``/api/state`` every second would pull.

Usage: python benchmarks/dashboard_push.py [--projects 5] [--per-project 100] [--interval 10]
       [--seconds 60] [--browsers 5]
Needs the test extras (Playwright) and Debian's Chromium.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rollout.engine.project import Project
from rollout.engine.state import StateStore
from rollout.util.serving import free_port
from tests.support.launches import env_names, launches, metrics, summary

#: in the page: every verdict a row shows, the first time it is shown (at the next frame), minus its ts
WATCH = """
() => {
  window.shownLatencies = [];
  const seen = new Map();
  const note = (tr) => {
    const at = parseFloat(tr.dataset.verdictAt);
    if (!at || seen.get(tr.dataset.key) === at) return;
    seen.set(tr.dataset.key, at);
    requestAnimationFrame(() => window.shownLatencies.push(Date.now() / 1000 - at));
  };
  new MutationObserver((changes) => changes.forEach((c) => {
    if (c.type === "attributes") note(c.target);
    c.addedNodes.forEach((n) => n.dataset && n.dataset.key && note(n));
  })).observe(document.querySelector("#envs tbody"), { subtree: true, childList: true, attributes: true, attributeFilter: ["data-verdict-at"] });
  document.querySelectorAll("#envs tr.row").forEach((tr) => seen.set(tr.dataset.key, parseFloat(tr.dataset.verdictAt)));
}
"""


def projects_in(folder: Path) -> dict[str, Project]:
    return {
        home.name: Project(home / "playbook.yaml", home / "environments", home / "state.db")
        for home in sorted(folder.iterdir())
        if (home / "playbook.yaml").exists()
    }


def serve(folder: Path, port: int) -> None:
    """The dashboard process: every project in ``folder``."""
    from rollout.dashboard.app import create_dashboard
    from rollout.util.serving import serve_forever

    serve_forever(create_dashboard(projects_in(folder), None), "127.0.0.1", port, log_level="warning")


def drive(folder: Path, interval: float, seconds: float) -> None:
    """Each environment evaluated every ``interval`` seconds, the writes spread evenly."""
    projects = projects_in(folder)
    stores = {name: StateStore(p.state_path) for name, p in projects.items()}
    envs = [(name, env) for name in projects for env in env_names(len(projects[name].playbook().phases))]
    rng = random.Random(7)
    gap = interval / len(envs)
    started = time.monotonic()
    written = 0
    while time.monotonic() - started < seconds:
        name, env = envs[written % len(envs)]
        verdict = rng.choice(["pass", "pass", "pass", "hold"])
        found = metrics(rng, verdict, 25)
        stores[name].record_verdict(env, time.time(), env, "ramp", 25, verdict, summary(found, verdict), found)
        written += 1
        time.sleep(max(0.0, started + written * gap - time.monotonic()))
    print(f"driver: {written} verdicts in {time.monotonic() - started:.1f}s", flush=True)


class RawClient:
    """An event-stream client without a browser: when each verdict's change arrives, minus its ts (the
    server's part of the time to shown)."""

    def __init__(self, url: str) -> None:
        self.latencies: list[float] = []
        self.counting = False
        self._thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self._thread.start()

    def _read(self, url: str) -> None:
        with httpx.stream("GET", f"{url}/api/events", timeout=httpx.Timeout(10, read=None)) as response:
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                arrived = time.time()
                for diff in (json.loads(line[6:]).get("rows") or {}).values():
                    if self.counting and diff and diff.get("last"):
                        self.latencies.append(arrived - diff["last"]["at"])


#: in the page: the time of each of 240 frames while it scrolls down 120 px a frame
SCROLL = """
() => new Promise((done) => {
  const frames = []; let last = performance.now(); let n = 0;
  function step(now) { frames.push(now - last); last = now; window.scrollBy(0, 120); if (++n < 240) requestAnimationFrame(step); else done(frames); }
  requestAnimationFrame(step);
})
"""


def load_and_scroll(browser: Any, url: str, loads: int = 3) -> str:
    """The overview's load (navigation start to its rows drawn, the frame after) and its scroll's frames."""
    shown, frames = [], []
    for _ in range(loads):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("performance.getEntriesByName('rollout:rows-shown').length > 0", timeout=60_000)
        shown.append(page.evaluate("new Promise((r) => requestAnimationFrame(() => r(performance.now())))"))
        frames += page.evaluate(SCROLL)
        context.close()
    frames.sort()
    return (
        f"load to rows drawn: median {statistics.median(shown):.0f} ms (of {loads}: "
        f"{', '.join(f'{x:.0f}' for x in shown)}); scrolling, {len(frames)} frames: median "
        f"{frames[len(frames) // 2]:.1f} ms, p95 {frames[int(len(frames) * 0.95)]:.1f} ms, max {frames[-1]:.1f} ms, "
        f"{sum(f > 50 for f in frames)} over 50 ms"
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="rollout-dashboard-push-"))
    t0 = time.monotonic()
    _, statuses = launches(folder, args.projects, args.per_project, time.time())
    print(f"{len(statuses)} environments written in {time.monotonic() - t0:.1f}s to {folder}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    me = [sys.executable, __file__]
    server = subprocess.Popen([*me, "--serve", str(folder), str(port)])
    driver = None
    try:
        t0 = time.monotonic()
        while True:
            try:
                if len(httpx.get(f"{url}/api/overview", timeout=30).json()["rows"]) == len(statuses):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        print(f"dashboard up with every row in {time.monotonic() - t0:.1f}s (its playbooks loaded, stores read once)")
        polled = len(httpx.get(f"{url}/api/state", timeout=120).content)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            idle = load_and_scroll(browser, url)
            pages: list[dict[str, Any]] = []
            for _ in range(args.browsers):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                record: dict[str, Any] = {"page": page, "stream": set(), "bytes": 0, "counting": False}
                cdp = context.new_cdp_session(page)
                cdp.send("Network.enable")

                def sent(event: dict[str, Any], record: dict[str, Any] = record) -> None:
                    if "/api/events" in event["request"]["url"]:
                        record["stream"].add(event["requestId"])

                def received(event: dict[str, Any], record: dict[str, Any] = record) -> None:
                    if record["counting"] and event["requestId"] in record["stream"]:
                        record["bytes"] += event.get("encodedDataLength") or event.get("dataLength", 0)

                cdp.on("Network.requestWillBeSent", sent)
                cdp.on("Network.dataReceived", received)
                page.goto(f"{url}/?sort=verdict")
                page.wait_for_function("performance.getEntriesByName('rollout:rows-shown').length > 0", timeout=60_000)
                pages.append(record)
            driver = subprocess.Popen([*me, "--drive", str(folder), str(args.interval), str(args.seconds + 15)])
            raw = RawClient(url)
            pages[0]["page"].wait_for_timeout(5_000)  # the driver at its pace
            for record in pages:
                record["page"].evaluate(WATCH)
                record["counting"] = True
            raw.counting = True
            cpu0, wall0 = cpu_seconds(server.pid), time.monotonic()
            while time.monotonic() - wall0 < args.seconds:
                for record in pages:
                    record["page"].wait_for_timeout(200)
            cpu1, wall1 = cpu_seconds(server.pid), time.monotonic()
            raw.counting = False
            busy = load_and_scroll(browser, url)  # a sixth page, while the five follow the verdicts
            for record in pages:
                record["counting"] = False
                record["latencies"] = record["page"].evaluate("window.shownLatencies")
            browser.close()
        span = wall1 - wall0
        latencies = sorted(x for r in pages for x in r["latencies"])
        rates = [r["bytes"] / span for r in pages]
        print(f"\n{len(statuses)} environments, each evaluated every {args.interval:g}s "
              f"({len(statuses) / args.interval:.0f} verdicts/s), {args.browsers} Chromium pages on the overview, "
              f"{span:.0f}s measured")  # fmt: skip
        print(f"bytes/s per page on the event stream: mean {statistics.mean(rates):,.0f}, "
              f"min {min(rates):,.0f}, max {max(rates):,.0f}")  # fmt: skip
        print(f"dashboard process CPU: {(cpu1 - cpu0) / span * 100:.1f}% of one core")
        if latencies:
            q = statistics.quantiles(latencies, n=100)
            print(f"verdict recorded -> shown: {len(latencies)} verdicts seen on the pages; p50 {q[49] * 1000:.0f} ms, "
                  f"p95 {q[94] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")  # fmt: skip
        if raw.latencies:
            q = statistics.quantiles(sorted(raw.latencies), n=100)
            print(f"verdict recorded -> its change received by a plain event-stream client: p50 {q[49] * 1000:.0f} ms, "
                  f"p95 {q[94] * 1000:.0f} ms, max {max(raw.latencies) * 1000:.0f} ms")  # fmt: skip
        print(f"the overview, nothing changing: {idle}")
        print(f"the overview, 50 verdicts/s and five pages open: {busy}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"for scale: the old /api/state is {polled:,} bytes for these environments: "
              f"{polled:,} bytes/s for one page polling it every second")  # fmt: skip
    finally:
        if driver is not None:
            driver.terminate()
            driver.wait(30)
        server.terminate()
        server.wait(30)


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve(Path(sys.argv[2]), int(sys.argv[3]))
        return
    if sys.argv[1:2] == ["--drive"]:
        drive(Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=5)
    parser.add_argument("--per-project", type=int, default=100)
    parser.add_argument(
        "--interval", type=float, default=10.0, help="seconds between two evaluations of one environment"
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--browsers", type=int, default=5)
    measure(parser.parse_args())


if __name__ == "__main__":
    main()
