"""The dashboard's event stream (server-sent events): the detector's batches as ``change`` events, each
carrying only what changed and an id (``BOOT-SEQ``) a reconnecting client sends back as
``Last-Event-ID`` to be sent what it missed; ``reset`` when that is no longer possible (the client
loads again); ``tick`` every few seconds with the server's clock (keeps proxies from closing an idle
stream, and the page's clocks in step with the engine's).

The overview's stream carries the overview rows' changed fields; an environment page's stream
carries its own row's changes and what its page adds: new verdicts, new audit lines, its steps, its
flag. See ``docs/dashboard.md`` for the shapes.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

from rollout.dashboard.detector import Batch, ChangeDetector, Subscription

#: seconds between ``tick`` events on a quiet stream
TICK_EVERY_S = 5.0
#: how long a browser waits before reconnecting (``retry:``), in ms
RETRY_MS = 1000


def _finite(value: Any) -> Any:
    """``value`` with every non-finite number as None (JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Compact JSON, never holding NaN or Infinity."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        return json.dumps(_finite(value), separators=(",", ":"), allow_nan=False, default=str)


def message(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One server-sent event."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {dumps(data)}\n\n".encode()


def view_of(batch: Batch, key: str | None) -> dict[str, Any] | None:
    """What of ``batch`` a client of ``key`` (None: the overview) is sent; None: nothing."""
    if key is None:
        return {"now": batch.now, "rows": batch.rows} if batch.rows else None
    env = batch.envs.get(key)
    if env is None and key not in batch.rows:
        return None
    return {"now": batch.now, "rows": {key: batch.rows[key]} if key in batch.rows else {}, **(env or {})}


def encode(boot: str, batch: Batch, key: str | None) -> bytes | None:
    """``batch`` as a ``change`` event for ``key``'s clients, encoded once for all of them."""
    if key not in batch.encoded:
        view = view_of(batch, key)
        batch.encoded[key] = None if view is None else message("change", view, f"{boot}-{batch.seq}")
    return batch.encoded[key]


async def stream(detector: ChangeDetector, sub: Subscription, last_id: str | None) -> AsyncIterator[bytes]:
    """A client's events: what it missed since ``last_id``, then each batch as it comes."""
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        missed = detector.replay(last_id)
        upto = 0
        if missed is None:
            yield message("reset", {"now": detector.clock.time(), "why": "load again: the events missed are gone"})
            return
        for batch in missed:
            upto = batch.seq
            data = encode(detector.boot, batch, sub.key)
            if data:
                yield data
        while True:
            try:
                item = await asyncio.wait_for(sub.queue.get(), TICK_EVERY_S)
            except TimeoutError:
                yield message("tick", {"now": detector.clock.time()})
                continue
            if item == Subscription.CLOSE:
                return
            if item == Subscription.OVERFLOW:
                yield message("reset", {"now": detector.clock.time(), "why": "load again: too far behind"})
                return
            assert isinstance(item, Batch)
            if item.seq <= upto:
                continue  # already sent with what was missed
            data = encode(detector.boot, item, sub.key)
            if data:
                yield data
    finally:
        detector.unsubscribe(sub)
