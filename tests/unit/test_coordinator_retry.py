"""One policy for a moving or loading group coordinator, whichever client calls it."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.coordinator_retry import (
    COORDINATOR_ATTEMPTS,
    ONE_TRY,
    CoordinatorFailure,
    CoordinatorRetry,
)
from consumer.core.errors import InfrastructureError
from consumer.kafka.coordinator import failure_of, ride_out

FAILURES: list[CoordinatorFailure] = ["moving", "transient", "refused"]


@given(st.sampled_from(FAILURES), st.integers(min_value=1, max_value=3 * COORDINATOR_ATTEMPTS))
def test_only_a_passing_failure_is_retried_and_never_past_the_attempts(
    failure: CoordinatorFailure, attempt: int
) -> None:
    wait = CoordinatorRetry().wait_before_retry(failure, attempt)
    if failure == "refused" or attempt >= COORDINATOR_ATTEMPTS:
        assert wait is None
    else:
        assert wait == 0.5


def test_a_single_try_never_waits() -> None:
    assert ONE_TRY.wait_before_retry("moving", 1) is None


def _raised(code: int, *, retriable: bool = False) -> KafkaException:
    return KafkaException(KafkaError(code, "x", retriable=retriable))


@pytest.mark.parametrize(
    ("code", "failure"),
    [
        (KafkaError.NOT_COORDINATOR, "moving"),
        (KafkaError.COORDINATOR_LOAD_IN_PROGRESS, "moving"),
        (KafkaError.COORDINATOR_NOT_AVAILABLE, "moving"),
        (KafkaError._WAIT_COORD, "moving"),
        (KafkaError._TIMED_OUT, "transient"),
        (KafkaError.REQUEST_TIMED_OUT, "transient"),
        (KafkaError.GROUP_AUTHORIZATION_FAILED, "refused"),
        (KafkaError.UNKNOWN_MEMBER_ID, "refused"),
    ],
)
def test_kafka_errors_are_classified_in_the_policys_words(
    code: int, failure: CoordinatorFailure
) -> None:
    assert failure_of(_raised(code)) == failure


def test_an_error_librdkafka_calls_retriable_is_transient() -> None:
    assert failure_of(_raised(KafkaError._TRANSPORT, retriable=True)) == "transient"


def test_ride_out_calls_again_while_the_coordinator_loads_then_answers() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def call() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _raised(KafkaError.COORDINATOR_LOAD_IN_PROGRESS)
        return "offsets"

    assert ride_out(call, "read committed offsets", CoordinatorRetry(), waits.append) == "offsets"
    assert waits == [0.5, 0.5]


def test_ride_out_gives_up_after_the_attempts_with_our_error() -> None:
    waits: list[float] = []

    def call() -> str:
        raise _raised(KafkaError.NOT_COORDINATOR)

    with pytest.raises(InfrastructureError, match="cannot describe group g") as caught:
        ride_out(call, "describe group g", CoordinatorRetry(attempts=4), waits.append)
    assert len(waits) == 3
    assert isinstance(caught.value.__cause__, KafkaException)


def test_ride_out_raises_a_refusal_at_once() -> None:
    waits: list[float] = []

    def call() -> str:
        raise _raised(KafkaError.GROUP_AUTHORIZATION_FAILED)

    with pytest.raises(InfrastructureError):
        ride_out(call, "commit offsets", CoordinatorRetry(), waits.append)
    assert waits == []
