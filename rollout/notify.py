"""Webhooks for the moments a person must know about: a flag-off (automatic or manual), a hold that
outlasted its limit, an approval needed, a phase completed, the whole rollout completed.

Each delivery runs in its own background thread, after the event happened (for a flag-off: after
the write and its confirmation), so it can never delay the kill switch, and the command prints its
answer before it waits for any. A delivery is retried a bounded number of times with a timeout
each, and its outcome is recorded in the audit log (``notify_sent`` / ``notify_failed``); a failed
delivery, a missing token included, is never fatal. The command waits for pending deliveries,
bounded, before it exits, and records any still going then as failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from rollout.util.errors import RolloutError
from rollout.util.redact import Redactor

EVENTS = ("flag_off", "hold_timeout", "approval_needed", "phase_completed", "rollout_completed", "health_warning")

_TITLES = {
    "flag_off": ":rotating_light: Flag turned OFF",
    "hold_timeout": ":hourglass: Hold timed out",
    "approval_needed": ":raising_hand: Approval needed",
    "phase_completed": ":white_check_mark: Phase completed",
    "rollout_completed": ":tada: Rollout completed",
    "health_warning": ":warning: Health warning",
}


def slack_escape(text: str) -> str:
    """``text`` as Slack shows it literally: ``&``, ``<`` and ``>`` escaped, so a reason holding
    ``<!channel>`` or ``<https://evil|click>`` can neither ping a channel nor hide a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(event: str, payload: dict[str, Any]) -> str:
    """One Slack-compatible line (mrkdwn) for ``payload``; every value in it is escaped."""

    def shown(key: str) -> str:
        return slack_escape(str(payload[key]))

    where = f"*{shown('environment')}*"
    if payload.get("phase"):
        where += f" phase `{shown('phase')}`"
    if payload.get("step"):
        where += f", step `{shown('step')}`"
    if payload.get("percent") is not None:
        where += f" at {shown('percent')}%"
    text = f"{_TITLES.get(event, event)} in {where}"
    if payload.get("summary"):
        text += f": {shown('summary')}"
    if payload.get("incident_report"):
        text += f" (incident report: {shown('incident_report')})"
    return text


class _Delivery:
    """One event to one hook: its thread, and whether its outcome is recorded (exactly once)."""

    def __init__(self, hook: Any, environment: str, payload: dict[str, Any]) -> None:
        self.hook, self.environment, self.payload = hook, environment, payload
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.recorded = False
        self.attempts = 0
        self.problem = "not tried"


class Notifier:
    """Delivers events to the playbook's webhooks; see the module docstring.

    A hook's token is resolved in its delivery's thread, when it is sent: a token that is not set
    fails that delivery (recorded as ``notify_failed``), never the flag-off it reports on."""

    def __init__(
        self,
        hooks: list[Any],
        secret: Callable[[str], str],
        redactor: Redactor,
        open_state: Callable[[], Any],
        actor: str = "rollout",
    ) -> None:
        self._hooks = list(hooks)
        self._secret = secret
        self._redactor = redactor
        self._open_state = open_state
        self._actor = actor
        self._pending: list[_Delivery] = []
        self._last: dict[int, threading.Thread] = {}

    def fire(self, event: str, environment: str, **details: Any) -> None:
        """Send ``event`` to every hook that listens for it, in the background."""
        payload = self._redactor.value({"event": event, "environment": environment, **details, "at": time.time()})
        payload["text"] = self._redactor.text(slack_text(event, payload))
        for index, hook in enumerate(self._hooks):
            if event not in hook.events:
                continue
            delivery = _Delivery(hook, environment, payload)
            # one hook's events arrive in the order they happened: each delivery waits for the one before
            previous = self._last.get(index)
            delivery.thread = threading.Thread(target=self._deliver, args=(delivery, previous), daemon=True)
            delivery.thread.start()
            self._last[index] = delivery.thread
            self._pending.append(delivery)

    def _deliver(self, delivery: _Delivery, previous: threading.Thread | None = None) -> None:
        if previous is not None:
            previous.join()
        hook = delivery.hook
        try:
            token = self._secret(hook.token) if hook.token else None
        except RolloutError as exc:
            delivery.problem = self._redactor.text(str(exc))
            self._finish(delivery, "notify_failed")
            return
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for attempt in range(hook.retries + 1):
            delivery.attempts = attempt + 1
            try:
                response = httpx.post(hook.url, json=delivery.payload, headers=headers, timeout=hook.timeout)
            except httpx.HTTPError as exc:
                delivery.problem = type(exc).__name__
            else:
                if 200 <= response.status_code < 300:
                    self._finish(delivery, "notify_sent")
                    return
                delivery.problem = f"HTTP {response.status_code}"
            if attempt < hook.retries:
                time.sleep(min(0.25 * 2**attempt, 2.0))
        self._finish(delivery, "notify_failed")

    def _finish(self, delivery: _Delivery, action: str, note: str | None = None) -> None:
        """Record ``delivery``'s outcome once (its own thread and :meth:`drain` may both try)."""
        with delivery.lock:
            if delivery.recorded:
                return
            delivery.recorded = True
        detail: dict[str, Any] = {
            "hook": delivery.hook.name,
            "event": delivery.payload["event"],
            "attempts": delivery.attempts,
        }
        if action == "notify_failed":
            detail["problem"] = delivery.problem + (f"; {note}" if note else "")
        try:  # a thread of its own needs a connection of its own
            state = self._open_state()
            try:
                state.audit(delivery.environment, action, time.time(), who=self._actor, **detail)
            finally:
                state.close()
        except Exception:  # noqa: BLE001 - a notification's bookkeeping must never break anything
            pass

    def drain(self, limit: float = 15.0) -> None:
        """Wait for pending deliveries, at most ``limit`` seconds in all (at exit, after the answer
        was printed, never before a kill). A delivery still going then is recorded as
        ``notify_failed`` now, so the audit says what became of every notification."""
        deadline = time.monotonic() + limit
        for delivery in self._pending:
            if delivery.thread is not None:
                delivery.thread.join(max(0.0, deadline - time.monotonic()))
        for delivery in self._pending:
            if delivery.thread is not None and delivery.thread.is_alive():
                self._finish(delivery, "notify_failed", f"still undelivered when rollout exited after {limit:g}s")
        self._pending = [d for d in self._pending if d.thread is not None and d.thread.is_alive()]
