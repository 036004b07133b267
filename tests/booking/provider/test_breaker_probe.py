"""The half-open breaker's one probe, in the real service: confirmations that come due beside it wait
for its answer instead of failing fast to the fallback (the flake of the backtest's healthy run)."""

from __future__ import annotations

from tests.support.harness import wait_until


def test_sends_due_with_the_half_open_probe_wait_for_its_answer(make_service, sandbox):
    service = make_service(WHATSAPP_BREAKER_THRESHOLD=5, WHATSAPP_BREAKER_RESET_MS=60_000, WHATSAPP_RETRY_BASE_MS=1000)
    sandbox.faults(http_5xx_rate=1.0)
    ids = []
    for n in range(1, 6):  # one at a time: each fails once and waits for its retry; the fifth opens the breaker
        ids.append(service.book(n)["id"])
        wait_until(
            lambda b=ids[-1]: (note := service.notification(b))["status"] == "pending" and note["attempts"] == 1,
            10,
            f"booking {ids[-1]} to wait for its retry",
        )
    assert service.metrics()["breaker_state"] == "open"
    sandbox.faults(http_5xx_rate=0.0)
    service.clock.advance(60)  # all five retries come due at once, with the breaker half-open: one turn claims them
    notes = [service.wait_status(b, "sent", "failed") for b in ids]
    assert [(n["status"], n["attempts"], n["fallback"]) for n in notes] == [("sent", 2, None)] * 5
    m = service.metrics()
    assert m["breaker_state"] == "closed" and m["breaker_activations"] == 1
    assert (m["successes"], m["failures"], m["failure_reasons"]) == (5, 0, {})
    # the probe went first and alone: the other four were sent after its success closed the breaker
    assert sandbox.stats()["requests"] == 10
