"""The circuit breaker: an outage stops dispatching; probes find the way back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.breaker import BreakerPolicy, CircuitBreaker, Signal, outage_signal
from consumer.core.decisions import (
    Applied,
    Fenced,
    Park,
    Reconcile,
    RetryLater,
    Stop,
    TripDecision,
)
from consumer.core.errors import FailureKind
from consumer.core.outcomes import RetryPolicy, classify_response, classify_transport_failure

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


def test_a_probe_answered_without_a_systemic_answer_reopens_with_the_same_interval() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(3):
        breaker.failure(0.0)
    assert breaker.allows(2.0)  # the probe, answered 429 (or 409, a refused read, cancelled)
    breaker.probe_ended(2.5)
    assert breaker.state == "open"
    assert not breaker.allows(4.4)
    assert breaker.allows(4.5), "the next probe goes one (undoubled) interval after the end"


def test_probe_ended_is_ignored_once_the_probe_had_a_systemic_answer() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(3):
        breaker.failure(0.0)
    assert breaker.allows(2.0)
    breaker.success()
    breaker.probe_ended(2.1)
    assert breaker.state == "closed"


def test_a_probe_never_answered_is_given_up_after_the_longest_interval() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(3):
        breaker.failure(0.0)
    assert breaker.allows(2.0)
    assert not breaker.allows(2.0 + POLICY.max_probe_interval - 0.01)
    assert breaker.allows(2.0 + POLICY.max_probe_interval)


_STEPS = st.lists(
    st.tuples(st.sampled_from(["ok", "fail", "ended", "ask"]), st.floats(0, 5)), max_size=200
)


def _drive(breaker: CircuitBreaker, steps: list[tuple[str, float]]) -> tuple[float, float]:
    """Apply `steps`; return (now, time of the last answer or probe start)."""
    now = last = 0.0
    for kind, dt in steps:
        now += dt
        if kind == "ask":
            was_open = breaker.is_open
            if breaker.allows(now) and was_open:
                last = now
        elif kind == "ok":
            breaker.success()
            last = now
        elif kind == "ended":
            breaker.probe_ended(now)
            last = now
        else:
            breaker.failure(now)
            last = now
    return now, last


@given(_STEPS, st.floats(0, 100))
def test_from_any_state_a_request_may_start_once_the_longest_interval_passed_without_answers(
    steps: list[tuple[str, float]], extra: float
) -> None:
    breaker = CircuitBreaker(POLICY)
    _, last = _drive(breaker, steps)
    assert breaker.allows(last + POLICY.max_probe_interval + extra)


@given(_STEPS)
def test_while_open_at_most_one_probe_starts_per_longest_interval_unless_answered(
    steps: list[tuple[str, float]],
) -> None:
    breaker = CircuitBreaker(POLICY)
    now = 0.0
    probe_at: float | None = None  # start of the probe still out, if any
    for kind, dt in steps:
        now += dt
        if kind == "ask":
            was_open = breaker.is_open
            if breaker.allows(now) and was_open:
                if probe_at is not None:
                    assert now - probe_at >= POLICY.max_probe_interval
                probe_at = now
        else:
            if kind == "ok":
                breaker.success()
            elif kind == "ended":
                breaker.probe_ended(now)
            else:
                breaker.failure(now)
            probe_at = None


@given(_STEPS)
def test_only_a_success_closes_the_circuit(steps: list[tuple[str, float]]) -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(3):
        breaker.failure(0.0)
    now = 0.0
    for kind, dt in steps:
        now += dt
        if kind == "ok":
            return
        if kind == "ask":
            breaker.allows(now)
        elif kind == "ended":
            breaker.probe_ended(now)
        else:
            breaker.failure(now)
        assert breaker.is_open


# -- what counts: the classification says it (outcomes.py), the breaker only reads it ----------
RETRY = RetryPolicy()


@pytest.mark.parametrize(
    ("status", "signal"),
    [(408, "down"), (500, "down"), (502, "down"), (503, "down"), (504, "down"), (429, None)],
)
def test_only_answers_about_digital_river_as_a_whole_count(
    status: int, signal: Signal | None
) -> None:
    answer = classify_response(status, None, "1", 1, RETRY, 0.5)
    assert isinstance(answer, RetryLater)
    assert outage_signal(answer) == signal


@pytest.mark.parametrize("kind", ["connect", "timeout", "reset", "protocol"])
def test_no_answer_at_all_counts_as_down(kind: FailureKind) -> None:
    assert outage_signal(classify_transport_failure(kind, 1, RETRY, 0.5)) == "down"


@pytest.mark.parametrize(
    "decision",
    [Applied("ful_1"), Park("rejected", 400, "invalid_parameter")],
)
def test_an_answer_that_applied_or_refused_something_says_it_is_up(decision: TripDecision) -> None:
    assert outage_signal(decision) == "up"


@pytest.mark.parametrize(
    "decision",
    [
        Stop("unauthorized", 401, None),
        Fenced(),
        RetryLater(1.0, True, "conflict_persisted", 409, systemic=False),
    ],
)
def test_a_stop_a_fenced_trip_or_a_persisting_conflict_says_nothing(
    decision: TripDecision,
) -> None:
    assert outage_signal(decision) is None


def test_observed_decisions_open_the_circuit_after_consecutive_systemic_failures() -> None:
    breaker = CircuitBreaker(POLICY)
    down = RetryLater(1.0, True, "server_error", 503, systemic=True)
    throttled = RetryLater(1.0, False, "rate_limited", 429, systemic=False)
    for decision in (down, throttled, down, Fenced(), down):
        breaker.observe(decision, 0.0)
    assert breaker.is_open, "429s and fenced trips neither count nor reset"
    assert breaker.allows(2.0)
    breaker.observe(Park("not_found", 404, "not_found"), 2.1)
    assert not breaker.is_open


@given(st.lists(st.sampled_from([503, 429, 400, 409, 201]), max_size=40))
def test_the_breaker_opens_exactly_when_the_last_run_of_systemic_answers_is_long_enough(
    statuses: list[int],
) -> None:
    breaker = CircuitBreaker(POLICY)
    run = 0
    for status in statuses:
        answer = classify_response(status, {"id": "ful_1"}, None, 1, RETRY, 0.5)
        if isinstance(answer, Reconcile):
            continue  # a trip looks before it decides: no trip ends in Reconcile
        breaker.observe(answer, 0.0)
        if status >= 500:
            run += 1
        elif status != 429:
            run = 0
    assert breaker.is_open is (run >= POLICY.failures_to_open)
