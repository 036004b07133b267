"""Webhooks, delivered to a real local receiver: what they carry, and that they never hold up a kill."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from rollout.engine import runner
from rollout.util.clock import SystemClock
from rollout.util.serving import ServerThread
from tests.engine.test_engine import world  # noqa: F401 - fixture

HOOK_TOKEN = "hook-token-0123456789"


class Receiver:
    """A webhook receiver on a free port: ``/ok`` answers 200, ``/flaky`` 500 once then 200,
    ``/hang`` never answers in time."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        app = FastAPI()
        seen = {"flaky": 0}

        @app.post("/{mode}")
        async def hook(mode: str, request: Request) -> JSONResponse:
            self.calls.append(
                {
                    "mode": mode,
                    "body": await request.json(),
                    "authorization": request.headers.get("authorization"),
                    "at": time.time(),
                }
            )
            if mode == "flaky":
                seen["flaky"] += 1
                if seen["flaky"] == 1:
                    return JSONResponse({"error": "try again"}, 500)
            if mode == "hang":
                await asyncio.sleep(5)
            return JSONResponse({"ok": True})

        self.server = ServerThread(app).start()
        self.url = self.server.url

    def events(self, mode: str = "ok") -> list[str]:
        return [c["body"]["event"] for c in self.calls if c["mode"] == mode]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.stop()


def with_hooks(playbook: Path, *hooks: str) -> None:
    playbook.write_text(playbook.read_text() + "notify:\n" + "".join(f"  - {h}\n" for h in hooks))


@pytest.mark.slow
def test_a_breach_is_told_to_the_webhook_after_the_flag_is_off(world, receiver, sandbox, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HOOK_TOKEN", HOOK_TOKEN)
    w = world()
    with_hooks(
        w.playbook,
        f"{{name: oncall, url: '{receiver.url}/ok', token: '${{HOOK_TOKEN}}'}}",
        f"{{name: flaky, url: '{receiver.url}/flaky', events: [flag_off], retries: 2}}",
    )
    w.breach_at(25, "(#131000) Something went wrong to 919876543210")
    assert w.advance().status == "rolled_back"
    [call] = [c for c in receiver.calls if c["mode"] == "ok"]
    body = call["body"]
    assert body["event"] == "flag_off" and body["environment"] == "production" and body["automatic"] is True
    assert body["percent"] == 25 and body["step"] == "ramp" and "alert" in body["summary"]
    assert body["confirmed"] is True and Path(body["incident_report"]).exists()
    assert body["text"].startswith(":rotating_light: Flag turned OFF in *production*")
    assert call["authorization"] == f"Bearer {HOOK_TOKEN}" and HOOK_TOKEN not in str(body)
    [off] = w.audit("flag_off")
    assert call["at"] > off["ts"]  # told after the write, never before
    # the flaky hook got it on the second try; both deliveries are recorded
    assert receiver.events("flaky") == ["flag_off", "flag_off"]
    sent = {(a["detail"]["hook"], a["detail"]["attempts"]) for a in w.audit("notify_sent")}
    assert sent == {("oncall", 1), ("flaky", 2)}


@pytest.mark.slow
def test_a_hook_that_hangs_never_holds_up_a_rollback(world, receiver):  # noqa: F811
    w = world()
    with_hooks(w.playbook, f"{{name: slow, url: '{receiver.url}/hang', timeout: 0.3s, retries: 1}}")
    w.flags.set(enabled=True, percent=100)
    started = time.monotonic()
    outcome = runner.rollback(w.project, "production", "pager", SystemClock(), who="oncall")
    elapsed = time.monotonic() - started
    assert outcome.exit_code == 0 and w.service.metrics(1)["flag_enabled"] is False
    outcome.pending()  # the deliveries finish after the answer
    [off] = w.audit("flag_off")
    [failed] = w.audit("notify_failed")
    assert failed["detail"]["problem"] == "ReadTimeout" and failed["detail"]["attempts"] == 2
    assert failed["ts"] > off["ts"] and elapsed < 10
    assert [c["at"] > off["ts"] for c in receiver.calls] == [True, True]


@pytest.mark.slow
def test_completions_and_approvals_are_told(world, receiver):  # noqa: F811
    w = world(percentages="10, 100")
    with_hooks(w.playbook, f"{{url: '{receiver.url}/ok', events: [phase_completed, rollout_completed]}}")
    w.clock.on_sleep.append(w.traffic(40))
    assert w.advance().status == "completed"
    assert receiver.events() == ["phase_completed", "rollout_completed"]
    assert receiver.calls[-1]["body"]["text"].startswith(":tada: Rollout completed in *production*")


def test_a_hold_that_times_out_asks_a_person(world, receiver):  # noqa: F811
    w = world(percentages="10, 100")
    with_hooks(w.playbook, f"{{url: '{receiver.url}/ok'}}")
    outcome = w.advance()  # no traffic: no data, never a pass; the hold times out and waits for a person
    assert outcome.status == "awaiting_approval"
    assert receiver.events() == ["hold_timeout"]
    assert "approve with `rollout advance --env production --approve`" in receiver.calls[0]["body"]["summary"]
