"""The dashboard looked at the way a person looks at it, in a real browser (Debian's Chromium driven by
Playwright): the overview of 3 and of 500 environments, and an environment page in the middle of a
real ramp and after its flag-off. Screenshots are kept; what a person would see is measured in the page:
no text over other text, every metric's current value inside the window, a metric without data saying
so, contrast that passes WCAG AA, the keyboard reaching every action with its focus showing."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from rollout.dashboard.app import create_dashboard
from rollout.engine.state import StateStore
from rollout.util.serving import ServerThread
from tests.support.engine_harness import EngineWorld
from tests.support.launches import env_names, launches, metrics, record, summary, write_playbooks
from tests.support.looks import WIDE, artifacts, looks_right, tab_through

#: starts real servers and a browser: outside the fast loop; one worker runs them, with one browser
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("chromium")]

TOKEN = "dashboard-token-0123"
STATUS_WORDS = {"idle", "running", "held", "awaiting approval", "rolled back", "completed", "interrupted"}


def rows_shown(page) -> list[dict[str, str]]:
    return page.evaluate(
        """() => [...document.querySelectorAll('#envs tr.row')].map((tr) => ({
            key: tr.dataset.key, env: tr.dataset.env, status: tr.querySelector('[data-role=status]').textContent,
            index: tr.getAttribute('aria-rowindex')}))"""
    )


def test_the_overview_of_three_and_of_500_environments(tmp_path, chromium):
    shots = artifacts(tmp_path)
    [(name, three)] = write_playbooks(tmp_path / "three", 1, 3).items()
    record(three, env_names(3), time.time(), kinds=["running", "rolled_back", "completed"])
    many, statuses = launches(tmp_path / "many", 5, 100, time.time())
    small = ServerThread(create_dashboard({name: three}, None, tick_s=0.05)).start()
    big = ServerThread(create_dashboard(many, None, tick_s=0.05)).start()
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(small.url)
        page.locator("#envs tr.row").nth(2).wait_for()
        # the flag-off first, said in words at the top and first in the table
        assert page.locator("#offs").is_visible()
        assert "eu-north-1" in page.locator("#offs li").first.inner_text()
        assert "turned off by the gates" in page.locator("#offs li").first.inner_text()
        assert [r["env"] for r in rows_shown(page)] == ["eu-north-1", "eu-west-1", "us-east-1"]
        assert [r["status"] for r in rows_shown(page)] == ["✕rolled back", "▶running", "✓completed"]
        assert (
            page.locator("[data-env=eu-west-1] [data-role=driver]")
            .inner_text()
            .startswith("terminal ops0@launches pid")
        )
        assert re.fullmatch(
            r"\d+m \d\ds in step|\d+h \d\dm in step",
            page.locator("[data-env=eu-west-1] [data-role=in-step]").inner_text(),
        )
        assert page.locator("[data-env=eu-west-1] [data-role=percent]").inner_text() in {"10%", "25%", "50%", "100%"}
        assert page.locator("[data-env=eu-north-1] [data-role=percent]").inner_text() == "flag off"
        assert looks_right(page) == []
        page.screenshot(path=str(shots / "overview-3.png"), full_page=True)
        # the keyboard: past the skip link and the filters to each environment's link, the focus showing
        walked = tab_through(page, 12)
        assert all(f["ring"] for f in walked), walked
        assert [f["text"] for f in walked if f["tag"] == "a" and f["row"]] == ["eu-north-1", "eu-west-1", "us-east-1"]
        assert {"Search", "Status", "Project", "Sort by"} <= {f["label"] for f in walked}

        page.goto(big.url)
        page.locator("#envs tr.row").first.wait_for()
        # on a loaded machine the first reading of five 100-phase playbooks may outlast the page's first load
        page.locator("#count", has_text="500 environments").wait_for(timeout=60_000)
        offs = sorted(k for k, s in statuses.items() if s == "rolled_back")
        assert page.locator("#offs-title").inner_text() == f"Flag turned off in {len(offs)} environments"
        shown = rows_shown(page)
        assert 20 < len(shown) < 80  # only the rows in view, and a margin, are in the document
        assert {r["status"][1:] for r in shown} <= STATUS_WORDS and shown[0]["status"] == "✕rolled back"
        assert looks_right(page) == []
        page.screenshot(path=str(shots / "overview-500.png"))
        # scrolled to the middle: the rows there are drawn, nothing overlaps
        page.mouse.wheel(0, 11_000)
        page.wait_for_function("document.querySelector('#envs tr.row').getAttribute('aria-rowindex') > 200")
        assert looks_right(page, "#envs tbody") == []
        page.screenshot(path=str(shots / "overview-500-scrolled.png"))
        # the keyboard walks through every row, beyond those drawn when it started
        page.evaluate("window.scrollTo(0, 0)")
        page.locator("#envs a.env").first.focus()
        walked = tab_through(page, 60)
        assert [int(f["row"]) for f in walked] == list(range(3, 63)) and all(f["ring"] for f in walked)
        # filter, search and sort, in the page
        page.select_option("#status", "rolled_back")
        assert page.locator("#count").inner_text() == f"{len(offs)} of 500 environments shown"
        assert {r["status"] for r in rows_shown(page)} == {"✕rolled back"}
        assert sorted(r["key"] for r in rows_shown(page)) == offs
        page.select_option("#status", "")
        page.fill("#q", "eu-west search")
        expected = sorted(k for k in statuses if k.startswith("search/eu-west-"))
        assert page.locator("#count").inner_text() == f"{len(expected)} of 500 environments shown"
        assert sorted(r["key"] for r in rows_shown(page)) == expected
        page.fill("#q", "")
        page.select_option("#project", "payments")
        page.select_option("#sort", "name")
        names = [r["env"] for r in rows_shown(page)]
        assert names == sorted(names) and {r["key"].split("/")[0] for r in rows_shown(page)} == {"payments"}
        assert "project=payments" in page.url and "sort=name" in page.url
        # live: a verdict recorded now is pushed, and with the newest verdicts first it is the first row
        page.select_option("#project", "")
        page.select_option("#sort", "verdict")
        target = next(k for k, s in statuses.items() if s == "running" and k.startswith("inventory/") is False)
        project, env = target.split("/")
        store = StateStore(many[project].state_path)
        try:
            found = metrics(__import__("random").Random(9), "hold", 25)
            store.record_verdict(env, time.time() + 3600, env, "ramp", 25, "hold", summary(found, "hold"), found)
        finally:
            store.close()
        page.wait_for_function(f"document.querySelector('#envs tr.row').dataset.key === {json.dumps(target)}")
        assert page.locator(f"[data-key='{target}'] [data-role=verdict]").inner_text() == "◔ HOLD success_rate"
    finally:
        context.close()
        small.stop()
        big.stop()


EXTRA = (
    "      - {metric: error_rate, target: 1%, alert: 5%}\n"
    "      - {metric: booking_latency_ms, kind: compare, target: 50, alert: 250}"
)


def test_an_environment_page_mid_ramp_and_after_its_flag_off(tmp_path, chromium, sandbox, monkeypatch):
    shots = artifacts(tmp_path)
    world = EngineWorld(tmp_path / "world", sandbox, extra_metrics=EXTRA)
    world.environ(monkeypatch)
    world.breach_at(50)

    def looked() -> bool:
        state = world.project.state(read_only=True)
        try:
            return bool(state.verdicts("production"))
        finally:
            state.close()

    # customers book only after the first look, so that look has nothing measured (a gap on each line)
    traffic = world.clock.on_sleep.pop()
    world.clock.on_sleep.append(lambda: traffic() if looked() else None)
    # the engine stops after its first look (nothing measured yet) and in the middle of its ramp (25%)
    # while the page is looked at
    stops = [looked, lambda: world.flags.state() == (True, 25)]
    reached, go = [threading.Event() for _ in stops], [threading.Event() for _ in stops]

    def hold() -> None:
        stop = next((i for i, r in enumerate(reached) if not r.is_set()), None)
        if stop is not None and stops[stop]():
            reached[stop].set()
            go[stop].wait(120)

    world.clock.on_sleep.insert(0, hold)
    outcome: dict[str, object] = {}
    engine = threading.Thread(target=lambda: outcome.update(done=world.advance()), daemon=True)
    engine.start()
    dashboard = ServerThread(create_dashboard(world.project, TOKEN, clock=world.clock, tick_s=0.05)).start()
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        assert reached[0].wait(120), "the ramp did not start"
        page = context.new_page()
        page.on("dialog", lambda d: d.accept("a closer look at checkout"))
        page.goto(f"{dashboard.url}/env/engine-test/production")
        page.locator("[data-panel=success_rate]").wait_for()
        # nothing measured yet at 10%: each metric says it has no data, and draws none
        for metric in ("success_rate", "error_rate", "booking_latency_ms"):
            panel = page.locator(f"[data-panel={metric}]")
            assert panel.locator("[data-role=current-value]").inner_text() == "no data (0 samples)"
            assert panel.locator("svg [data-role=no-data]").text_content().startswith("no data: ")
            assert panel.locator("svg path").count() == 0
        assert looks_right(page) == []
        page.screenshot(path=str(shots / "environment-first-look.png"), full_page=True)
        go[0].set()
        assert reached[1].wait(120), "the ramp did not reach 25%"
        page.wait_for_function("document.querySelector('[data-role=in-force]').textContent.startsWith('25%')")
        # the steps: configure done, the ramp now with 10% passed and 25% in force, its hold's clock
        assert page.locator("#steps > li").evaluate_all("ls => ls.map(l => l.dataset.state)") == ["done", "current"]
        assert page.locator("[data-role=passed]").all_inner_texts() == ["10% ✓"]
        assert page.locator("[data-role=in-force]").inner_text() == "25% ◀ in force"
        assert page.locator("[data-role=planned]").all_inner_texts() == ["50%", "100%"]
        assert re.match(r"held \d+\.\ds of 4\.0s: \d+\.\ds left", page.locator("[data-role=hold]").inner_text())
        # the flag as the service reports it, read again when the record says it was written
        page.wait_for_function(
            "document.querySelector('[data-role=flag]').textContent.startsWith('flag on at 25% (reported by the service at')"
        )
        # the charts: the percentage, then every metric, full width, each value in the window
        panels = page.locator("[data-panel]").evaluate_all("ps => ps.map(p => p.dataset.panel)")
        assert panels == ["percent", "success_rate", "error_rate", "booking_latency_ms", "sample_ratio"]
        widths = page.locator(".panel svg").evaluate_all("ss => ss.map(s => s.getBoundingClientRect().width)")
        assert min(widths) > 0.9 * page.locator("#charts").evaluate("c => c.clientWidth - 30")
        assert page.evaluate(WIDE, "[data-role=current-value]") == []
        # the first look, without data, is a shaded gap at the start of each metric's line
        assert page.locator("[data-panel=success_rate] [data-gap]").count() == 1
        # treatment and control drawn as two lines where they were compared (at 10%)
        compared = page.locator("[data-panel=booking_latency_ms]")
        assert compared.locator("svg path").count() == 2
        assert {"treatment", "control"} <= set(
            compared.locator("svg text[data-role]").evaluate_all("ts => ts.map(t => t.dataset.role)")
        )
        assert looks_right(page) == []
        page.screenshot(path=str(shots / "environment-mid-ramp.png"), full_page=True)
        # a verdict opens to every metric; the audit filters to the flag's changes
        page.locator("#verdicts details summary").first.click()
        assert page.locator("#verdicts details[open] td").first.inner_text() == "success_rate"
        page.select_option("#audit-kind", "flag")
        assert set(page.locator("#audit li").evaluate_all("ls => ls.map(l => l.dataset.actionName)")) <= {
            "flag_intent", "ramp", "configure"
        }  # fmt: skip
        page.fill("#audit-q", "25%")
        assert page.locator("#audit li").all_inner_texts()[0].endswith("ramp: flag on for 25% (was 10%)")
        page.select_option("#audit-kind", "")
        page.fill("#audit-q", "")
        # the keyboard reaches every action, with its focus showing; Pause and Continue from it
        page.fill("#actor", "ana")
        page.fill("#token", TOKEN)
        page.locator("#token").focus()
        walked = tab_through(page, 6)
        assert [f["action"] for f in walked[:4]] == ["rollback", "pause", "promote", "promote-full"]
        assert all(f["ring"] for f in walked)
        page.locator("#token").focus()
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")  # Pause
        page.locator("#paused [data-role=paused]").wait_for()
        page.locator("[data-action=continue]").focus()
        page.keyboard.press("Enter")
        page.locator("[data-action=pause]").wait_for(state="visible")
        steered = [(a["action"], a["actor"]) for a in world.audit() if a["action"] in ("paused", "continued")]
        assert steered == [("paused", "ana via dashboard"), ("continued", "ana via dashboard")]
        page.locator("#audit li[data-action-name=continued]").wait_for()  # pushed to the open page

        go[1].set()  # the ramp goes on, to 50%, where the provider fails: the page follows, pushed
        page.locator("#status [data-status=rolled_back]").wait_for(timeout=60_000)
        page.locator("#offbanner").wait_for(state="visible")
        assert page.locator("#offbanner").inner_text().startswith("✕ Flag turned off at ")
        assert "by the gates: " in page.locator("#offbanner").inner_text()
        page.locator("[data-panel=percent] [data-role=flag-off]").wait_for(state="attached")
        page.wait_for_function(
            "document.querySelector('[data-role=flag]').textContent.startsWith('flag off')", timeout=20_000
        )
        assert page.locator("[data-action]:visible").count() == 0  # nothing left to do: the flag is off
        assert page.locator("#noaction").is_visible()
        assert page.locator("#steps > li").evaluate_all("ls => ls.map(l => l.dataset.state)") == ["done", "stopped"]
        assert page.locator("[data-role=turned-off]").inner_text() == "50% ✕ turned off"
        assert page.locator("[data-panel=percent] [data-role=current-value]").inner_text() == "0%"
        assert page.evaluate(WIDE, "[data-role=current-value]") == []
        assert looks_right(page) == []
        page.screenshot(path=str(shots / "environment-after-flag-off.png"), full_page=True)
        engine.join(60)
        assert outcome["done"].status == "rolled_back"

        # the place for the forecast: shown when the page's JSON carries one per step
        def forecast(route) -> None:
            body = route.fetch().json()
            body["steps"][1]["forecast"] = {"10%": "decides in about 4 min", "25%": "decides in about 2 min"}
            route.fulfill(json=body)

        page.route("**/api/env/**", forecast)
        # the forecasts computed from the traffic (tests/gates/forecast/test_plan_forecast.py) would take the place: not here
        page.route("**/api/forecast/**", lambda route: route.fulfill(status=404, json={}))
        page.reload()
        page.locator("[data-role=forecast]").wait_for()
        assert page.locator("[data-role=forecast] dd").all_inner_texts() == [
            "decides in about 4 min",
            "decides in about 2 min",
        ]
    finally:
        for event in go:
            event.set()
        context.close()
        dashboard.stop()
        engine.join(60)
        world.close()
