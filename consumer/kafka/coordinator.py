"""Calls to a group's coordinator that ride out its moves. [io]

Every read or write of a group's committed offsets and every group description goes through
`ride_out`, which retries as the one policy (`consumer.core.coordinator_retry`) says and turns
what is left into an `InfrastructureError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException

from consumer.core.coordinator_retry import CoordinatorFailure, CoordinatorRetry
from consumer.core.errors import InfrastructureError

T = TypeVar("T")

_MOVING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError._WAIT_COORD,
    }
)
_TIMED_OUT = frozenset({KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT})


def failure_of(exc: KafkaException) -> CoordinatorFailure:
    """confluent-kafka's error, in the policy's words."""
    error = exc.args[0] if exc.args else None
    if not isinstance(error, KafkaError):
        return "refused"
    if error.code() in _MOVING:
        return "moving"
    if error.code() in _TIMED_OUT or error.retriable():
        return "transient"
    return "refused"


def ride_out(
    call: Callable[[], T],
    what: str,
    policy: CoordinatorRetry,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, again while the coordinator is moving or loading; blocks up to the policy's
    attempts. Raises InfrastructureError("cannot <what>: ...") once the policy gives up."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except KafkaException as exc:
            wait = policy.wait_before_retry(failure_of(exc), attempt)
            if wait is None:
                raise InfrastructureError(f"cannot {what}: {exc}") from exc
            sleep(wait)
