from rollout.booking.provider.breaker import BreakerState, CircuitBreaker
from rollout.util.clock import ManualClock


def make(threshold=5, reset=60.0):
    clock = ManualClock()
    opened = []
    breaker = CircuitBreaker(clock, threshold, reset, on_open=lambda: opened.append(clock.time()))
    return clock, breaker, opened


def test_opens_after_threshold_consecutive_failures_and_fails_fast():
    clock, breaker, opened = make()
    for _ in range(4):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.activations == 1 and len(opened) == 1
    assert not breaker.allow()
    clock.advance(59.9)
    assert not breaker.allow()


def test_success_resets_the_consecutive_count():
    _, breaker, _ = make(threshold=3)
    for _ in range(10):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.activations == 0


def test_half_open_lets_one_probe_and_success_closes():
    clock, breaker, _ = make(threshold=1, reset=60)
    breaker.record_failure()
    clock.advance(60)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_failed_probe_reopens_and_counts_an_activation():
    clock, breaker, opened = make(threshold=1, reset=60)
    breaker.record_failure()
    clock.advance(61)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.activations == 2 and len(opened) == 2
    clock.advance(30)
    assert not breaker.allow()
    clock.advance(30)
    assert breaker.allow()


def test_neutral_answer_from_probe_closes():
    clock, breaker, _ = make(threshold=1, reset=1)
    breaker.record_failure()
    clock.advance(1)
    assert breaker.allow()
    breaker.record_neutral()
    assert breaker.state is BreakerState.CLOSED
