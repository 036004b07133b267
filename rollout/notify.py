"""Webhooks for the moments a person must know about: a flag-off (automatic or manual), a hold that
outlasted its limit, an approval needed, a phase completed, the whole rollout completed.

Each delivery runs in its own background thread, after the event happened (for a flag-off: after
the write and its confirmation), so it can never delay the kill switch. It is retried a bounded
number of times with a timeout each, and its outcome is recorded in the audit log
(``notify_sent`` / ``notify_failed``); a failed delivery is never fatal. The command waits for
pending deliveries, bounded, before it exits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from rollout.redact import Redactor

EVENTS = ("flag_off", "hold_timeout", "approval_needed", "phase_completed", "rollout_completed")

_TITLES = {
    "flag_off": ":rotating_light: Flag turned OFF",
    "hold_timeout": ":hourglass: Hold timed out",
    "approval_needed": ":raising_hand: Approval needed",
    "phase_completed": ":white_check_mark: Phase completed",
    "rollout_completed": ":tada: Rollout completed",
}


def slack_text(event: str, payload: dict[str, Any]) -> str:
    """One Slack-compatible line (mrkdwn) for ``payload``."""
    where = f"*{payload.get('environment')}*"
    if payload.get("phase"):
        where += f" phase `{payload['phase']}`"
    if payload.get("step"):
        where += f", step `{payload['step']}`"
    if payload.get("percent") is not None:
        where += f" at {payload['percent']}%"
    text = f"{_TITLES.get(event, event)} in {where}"
    if payload.get("summary"):
        text += f": {payload['summary']}"
    if payload.get("incident_report"):
        text += f" (incident report: {payload['incident_report']})"
    return text


class Notifier:
    """Delivers events to the playbook's webhooks; see the module docstring."""

    def __init__(self, hooks: list[Any], secret: Callable[[str], str], redactor: Redactor,
                 open_state: Callable[[], Any], actor: str = "rollout") -> None:
        self._hooks = [(hook, secret(hook.token) if hook.token else None) for hook in hooks]
        self._redactor = redactor
        self._open_state = open_state
        self._actor = actor
        self._threads: list[threading.Thread] = []
        self._last: dict[int, threading.Thread] = {}

    def fire(self, event: str, environment: str, **details: Any) -> None:
        """Send ``event`` to every hook that listens for it, in the background."""
        payload = self._redactor.value({"event": event, "environment": environment, **details,
                                        "at": time.time()})
        payload["text"] = self._redactor.text(slack_text(event, payload))
        for index, (hook, token) in enumerate(self._hooks):
            if event not in hook.events:
                continue
            # one hook's events arrive in the order they happened: each delivery waits for the one before
            previous = self._last.get(index)
            thread = threading.Thread(target=self._deliver, args=(hook, token, environment, payload, previous),
                                      daemon=True)
            thread.start()
            self._last[index] = thread
            self._threads.append(thread)

    def _deliver(self, hook: Any, token: str | None, environment: str, payload: dict[str, Any],
                 previous: threading.Thread | None = None) -> None:
        if previous is not None:
            previous.join()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        problem = "not tried"
        attempts = 0
        for attempt in range(hook.retries + 1):
            attempts = attempt + 1
            try:
                response = httpx.post(hook.url, json=payload, headers=headers, timeout=hook.timeout)
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            else:
                if 200 <= response.status_code < 300:
                    self._record(environment, "notify_sent", hook=hook.name, event=payload["event"],
                                 attempts=attempts)
                    return
                problem = f"HTTP {response.status_code}"
            if attempt < hook.retries:
                time.sleep(min(0.25 * 2 ** attempt, 2.0))
        self._record(environment, "notify_failed", hook=hook.name, event=payload["event"], attempts=attempts,
                     problem=problem)

    def _record(self, environment: str, action: str, **detail: Any) -> None:
        try:  # a thread of its own needs a connection of its own
            state = self._open_state()
            try:
                state.audit(environment, action, time.time(), who=self._actor, **detail)
            finally:
                state.close()
        except Exception:  # noqa: BLE001 - a notification's bookkeeping must never break anything
            pass

    def drain(self, limit: float = 15.0) -> None:
        """Wait for pending deliveries, at most ``limit`` seconds in all (at exit, never before a kill)."""
        deadline = time.monotonic() + limit
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
