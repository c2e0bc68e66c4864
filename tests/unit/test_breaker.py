"""The circuit breaker: an outage stops dispatching; probes find the way back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.breaker import BreakerPolicy, CircuitBreaker

POLICY = BreakerPolicy(failures_to_open=3, first_probe_after=2.0, max_probe_interval=8.0)


def test_consecutive_systemic_failures_open_the_circuit() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(2):
        breaker.failure(0.0)
    assert breaker.allows(0.0)
    breaker.failure(0.0)
    assert breaker.is_open
    assert not breaker.allows(1.9)


def test_a_success_between_failures_keeps_it_closed() -> None:
    breaker = CircuitBreaker(POLICY)
    breaker.failure(0.0)
    breaker.failure(0.0)
    breaker.success()
    breaker.failure(0.0)
    breaker.failure(0.0)
    assert not breaker.is_open


def test_while_open_exactly_one_probe_goes_per_interval_and_a_success_closes() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(3):
        breaker.failure(0.0)
    assert breaker.allows(2.0)  # the probe
    assert not breaker.allows(2.0)  # nothing else while the probe is out
    breaker.success()
    assert breaker.allows(2.1)
    assert not breaker.is_open


def test_failed_probes_back_off_up_to_the_cap() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(3):
        breaker.failure(0.0)
    now, waits = 0.0, []
    for _ in range(5):
        start = now
        while not breaker.allows(now):
            now += 0.5
        waits.append(now - start)
        breaker.failure(now)
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0]


@given(st.lists(st.tuples(st.sampled_from(["ok", "fail", "ask"]), st.floats(0, 5)), max_size=200))
def test_never_more_than_one_request_starts_while_open(steps: list[tuple[str, float]]) -> None:
    breaker = CircuitBreaker(POLICY)
    now = 0.0
    out = 0  # probes started and not yet answered while not closed
    for kind, dt in steps:
        now += dt
        if kind == "ask":
            was_open = breaker.is_open
            if breaker.allows(now) and was_open:
                out += 1
                assert out <= 1
        elif kind == "ok":
            breaker.success()
            out = 0
        else:
            breaker.failure(now)
            out = 0
